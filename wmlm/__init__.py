"""wmlm: the command-line entry points and data plumbing around `modeling_wmlm` and `dataset_scripts`."""
