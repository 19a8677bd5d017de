"""In-step transfer objectives: the registry and joint loss (objectives.py), one file per method,
and what the methods share (adversarial.py, grl.py, lambdas.py). See objectives.py to add one."""
