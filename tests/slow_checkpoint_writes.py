"""Imported into a trainer by the kill tests (``custom_imports``): checkpoint files are written
in ten slow chunks, so that a test can SIGKILL the trainer while one is half-written."""
import time

from mmengine.fileio.backends.local_backend import LocalBackend

_put = LocalBackend.put


def _slow_put(self, obj, filepath):
    if not str(filepath).endswith(('.pth', '.pth.tmp')):
        return _put(self, obj, filepath)
    step = len(obj) // 10 + 1
    with open(filepath, 'wb') as f:
        for i in range(0, len(obj), step):
            f.write(obj[i:i + step])
            f.flush()
            time.sleep(0.1)


LocalBackend.put = _slow_put
