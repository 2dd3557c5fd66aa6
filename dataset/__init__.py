"""The data: the data description and the AVE layout (layout.py, the ground floor), and
AVE-layout folders turned into validated labels and float32 features on the training
device, in memory or streamed; label files from the annotations; synthetic sets."""
