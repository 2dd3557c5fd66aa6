"""From video files to the AVE release's features: decoding, VGGish audio, VGG-19 visual."""
