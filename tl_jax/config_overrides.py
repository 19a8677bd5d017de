"""Dotted-key config overrides (`--config.train.num_steps=50`, a sweep's {'seed': 1}): one parser.

`tl-jax train` checks the keys here before absl's config_flags parses the values (its type
errors name the field's type); `tl-jax sweep` parses the values and applies them here. Both
name the closest valid key for a typo the same way. No jax: the config layer stays light.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ml_collections as mlc

from tl_jax import errors

FLAG_PREFIX = '--config.'


class OverrideError(errors.TlJaxError, ValueError):
  """An override of a key the config does not have, or with a value its field cannot hold."""


def flag_keys(argv: Iterable[str]) -> list[str]:
  """The keys of every `--config.KEY[=VALUE]` argument (absl also takes `--config.KEY VALUE`)."""
  return [a[len(FLAG_PREFIX):].split('=', 1)[0] for a in argv if a.startswith(FLAG_PREFIX)]


def parse_flags(argv: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
  """({key: parsed value} of the `--config.KEY=VALUE` arguments, the other arguments)."""
  overrides, rest = {}, []
  for arg in argv:
    if arg.startswith(FLAG_PREFIX) and '=' in arg:
      key, text = arg[len(FLAG_PREFIX):].split('=', 1)
      overrides[key] = parse_value(text)
    else:
      rest.append(arg)
  return overrides, rest


def parse_value(text: str) -> Any:
  """A Python literal (never evaluated as code), else the text itself: `minilm` needs no quotes."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def flat_keys(config: Any, prefix: str = '') -> list[str]:
  """Every dotted key of `config`, sections included ('train', 'train.num_steps', ...)."""
  keys = []
  for key, value in config.items():
    name = f'{prefix}{key}'
    keys.append(name)
    if hasattr(value, 'items'):
      keys.extend(flat_keys(value, name + '.'))
  return keys


def between(base: mlc.ConfigDict, config: mlc.ConfigDict) -> dict[str, Any]:
  """The dotted-key overrides that turn config `base` into `config` (values that differ), so a
  sweep can run several config files as runs over one base: each file stays the one place its
  method is set."""
  def leaves(c):
    values = {k: lookup(c, k) for k in flat_keys(c)}
    return {k: v for k, v in values.items() if not hasattr(v, 'items')}
  want, have = leaves(config), leaves(base)
  if missing := sorted(set(want) - set(have)):
    raise OverrideError(f'keys {missing} are not in the base config: a sweep can only override '
                        'keys its base config has')
  return {k: v for k, v in want.items() if have[k] != v}


def lookup(config: Any, key: str) -> Any:
  """The value at a dotted key (KeyError if there is none)."""
  value = config
  for part in key.split('.'):
    value = value[part]
  return value


def key_hint(key: str, valid: Sequence[str], spell: Callable[[str], str] = repr) -> str:
  """'; did you mean <key>?' for an unknown key, or '' without a good guess.

  Matched inside the deepest section of `key` that exists (a typo under transfer.coral is
  matched against transfer.coral's keys, not the whole config), else that section's keys are
  listed. `spell` writes a key as the user wrote it: repr, or `--config.` + key on the CLI."""
  sections = {k for k in valid if any(v.startswith(k + '.') for v in valid)}
  parts = key.split('.')
  depth = max((i for i in range(len(parts)) if '.'.join(parts[:i]) in sections), default=0)
  section = '.'.join(parts[:depth])
  prefix = section + '.' if section else ''
  rest = '.'.join(parts[depth:])
  # Candidates as deep as the rest of the key, named relative to the section.
  candidates = [v[len(prefix):] for v in valid
                if v.startswith(prefix) and v.count('.') == key.count('.')]
  close = difflib.get_close_matches(rest, candidates, n=1, cutoff=0.6)
  if close:
    return f'; did you mean {spell(prefix + close[0])}?'
  children = sorted(v[len(prefix):] for v in valid if v.startswith(prefix)
                    and '.' not in v[len(prefix):])
  if section and children:
    shown = ', '.join(children[:20]) + (', ...' if len(children) > 20 else '')
    return f'; config.{section} has: {shown}'
  close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
  return f'; did you mean {spell(close[0])}?' if close else ''


def coerce(old: Any, new: Any) -> Any:
  """A value as the field's type: lists become tuples where the field is a tuple, and a str
  field takes `1` as '1' (the parsed literal of an unquoted value)."""
  if isinstance(old, tuple) and isinstance(new, list):
    return tuple(tuple(v) if isinstance(v, list) else v for v in new)
  if isinstance(old, str) and not isinstance(new, str):
    return str(new)
  return new


def apply(config: mlc.ConfigDict, overrides: Mapping[str, Any]) -> mlc.ConfigDict:
  """A copy of `config` with dotted keys set; a mapping onto a section updates its keys.
  OverrideError names an unknown key's closest valid one, or the field a value cannot go in."""
  config = mlc.ConfigDict(config.to_dict())  # unlocked copy, tuples kept
  valid = flat_keys(config)
  for key, value in overrides.items():
    if key not in valid:
      raise OverrideError(f'override {key!r} is not a config key{key_hint(key, valid)}')
    *parents, leaf = key.split('.')
    node = lookup(config, '.'.join(parents)) if parents else config
    old = node[leaf]
    if isinstance(old, mlc.ConfigDict) and isinstance(value, Mapping):
      node[leaf] = mlc.ConfigDict({**old.to_dict(), **value})
      continue
    try:
      node[leaf] = coerce(old, value)
    except TypeError as e:
      raise OverrideError(f'override {key}={value!r}: {e}') from None
  return config
