"""Minimal safetensors writer and reader (float32 / int64 only), so the fixture scripts need no extra pip package.

Format (https://github.com/huggingface/safetensors): 8-byte little-endian u64 N, then N bytes of UTF-8 JSON header
{"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...},
padded with spaces so the data starts on an 8-byte boundary, then the raw little-endian tensor bytes, offsets
relative to the start of the data section. Tensors are written in sorted name order, packed without gaps.
"""
import json
import struct

import numpy as np

_DTYPES = {np.dtype('<f4'): 'F32', np.dtype('<i8'): 'I64'}
_NUMPY_OF = {v: k for k, v in _DTYPES.items()}


def _to_numpy(value):
    """Accept a torch tensor or anything numpy can take; return a C-contiguous little-endian array."""
    if hasattr(value, 'detach'):  # torch.Tensor, without importing torch here
        value = value.detach().cpu().numpy()
    array = np.array(value, order='C', copy=True)  # np.ascontiguousarray would turn a 0-d scalar into [1]
    if array.dtype == np.float64:
        raise TypeError('refusing float64: convert to float32 explicitly')
    array = array.astype(array.dtype.newbyteorder('<'), copy=False)
    if array.dtype not in _DTYPES:
        raise TypeError(f'unsupported dtype {array.dtype}')
    return array


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: array}; metadata: {str: str} stored as __metadata__."""
    arrays = {name: _to_numpy(value) for name, value in tensors.items()}
    header = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f'metadata must map str to str, got {key!r}: {type(value).__name__}')
        header['__metadata__'] = dict(metadata)
    offset = 0
    for name in sorted(arrays):
        array = arrays[name]
        header[name] = {
            'dtype': _DTYPES[array.dtype],
            'shape': list(array.shape),
            'data_offsets': [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    header_bytes = json.dumps(header, separators=(',', ':')).encode('utf-8')
    header_bytes += b' ' * ((-len(header_bytes)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(header_bytes)))
        f.write(header_bytes)
        for name in sorted(arrays):
            f.write(arrays[name].tobytes(order='C'))


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata dict). Used by the scripts to check what they wrote."""
    with open(path, 'rb') as f:
        data = f.read()
    (header_len,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + header_len].decode('utf-8'))
    metadata = header.pop('__metadata__', {})
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        begin, end = info['data_offsets']
        dtype = _NUMPY_OF[info['dtype']]
        tensors[name] = np.frombuffer(data[base + begin:base + end], dtype=dtype).reshape(info['shape']).copy()
    return tensors, metadata


def write_fixture(path, tensors, metadata):
    """Writes torch tensors as float32 safetensors at `path` (folders created), then reads the file back and
    checks every tensor and the metadata, so a fixture is never committed half right."""
    import os
    out_path = os.path.normpath(path)
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    write_safetensors(out_path, {k: v.detach().float().contiguous() for k, v in tensors.items()}, metadata)
    back, back_meta = read_safetensors(out_path)
    for k, v in tensors.items():
        assert np.array_equal(back[k], v.detach().numpy()), k
    assert back_meta == metadata
    print(f'wrote {out_path}: {len(tensors)} tensors, {os.path.getsize(out_path)} bytes')
