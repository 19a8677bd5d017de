"""Our TFDS builders; importing this package registers them with TFDS by name."""

from tl_jax.data.builders import bbc_news  # bbc_news
from tl_jax.data.builders import bbc_shift  # bbc_shift/{lead,tail,tail_ocr}
from tl_jax.data.builders import digits  # digits/{original,inverted,rotated,noised,scaled16}
from tl_jax.data.builders import folder  # folder:/path/to/DIR (see folder.py)

__all__ = ['bbc_news', 'bbc_shift', 'digits', 'folder']
