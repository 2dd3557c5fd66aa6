"""What a file given as a checkpoint or a weights file is, read from its first bytes."""

ZIP_MAGIC = b'PK\x03\x04'   # torch.save's format since PyTorch 1.6: a zip archive
PICKLE_MAGIC = b'\x80'      # torch.save's legacy format: a pickle (protocol 2 or later)


def torch_file_kind(path):
    """'torch' for either of torch.save's formats, else what the file looks like: 'an empty
    file', 'a text file', 'an HDF5 file' or 'neither of torch.save's formats'. OSErrors pass."""
    with open(path, 'rb') as f:
        head = f.read(512)
    if head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        return 'torch'
    if not head:
        return 'an empty file'
    if head.startswith(b'\x89HDF'):
        return 'an HDF5 file'
    try:
        head.decode('utf-8')
        return 'a text file'
    except UnicodeDecodeError:
        return "neither of torch.save's formats"
