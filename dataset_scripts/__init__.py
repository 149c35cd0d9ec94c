"""Data for wmlm: the DeepSense 6G `datasets` builder and the digital twin that writes DeepSense-layout scenarios."""
