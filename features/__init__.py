"""From video files to features in the AVE release's layout: decoding, the VGGish audio and
VGG-19 visual networks, and extraction into a data folder. A floor above dataset/, whose
layout and HDF5 writers it uses; it never uses model/."""
