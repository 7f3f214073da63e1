"""Checkpoints that a hard kill cannot take away.

mmengine's ``CheckpointHook`` deletes the checkpoint that ``max_keep_ckpts`` lets go *before*
writing the new one, writes the new one in place, then points ``last_checkpoint`` at it: a kill
during the write leaves a truncated newest file, no older one, and a ``last_checkpoint`` that
names the broken file. :class:`SafeCheckpointHook` writes to a temporary name, renames it into
place (atomic on one file system), then updates ``last_checkpoint`` the same way, and only
then prunes. :func:`find_resumable` is what ``--resume`` without a path uses: the newest
checkpoint in the work dir that is complete, naming the ones it skipped.
"""
import glob
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS


def atomic_write_text(path: str, text: str) -> None:
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with crash-safe saving: write to ``.<name>.tmp``, rename, point
    ``last_checkpoint`` at it (also by rename), then prune beyond ``max_keep_ckpts``. Same
    arguments and files as ``CheckpointHook``; ``tools/train.py`` uses it in its place."""

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):  # remote: no rename to rely on
            return super()._save_checkpoint_with_step(runner, step, meta)
        prune = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                prune.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        name = self.filename_tmpl.format(step)
        tmp_name = f'.{name}.tmp'
        self.last_ckpt = self.file_backend.join_path(self.out_dir, name)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, tmp_name, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        os.replace(osp.join(self.out_dir, tmp_name), self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in prune:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)


def is_complete_checkpoint(path: str) -> Tuple[bool, str]:
    """(ok, reason): a torch checkpoint is a zip archive whose directory sits at its end, so a
    file cut short by a kill fails to open without reading its tensors."""
    if not osp.isfile(path):
        return False, 'missing'
    if osp.getsize(path) == 0:
        return False, 'empty'
    try:
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith('data.pkl') for n in z.namelist()):
                return False, 'not a torch checkpoint'
    except (zipfile.BadZipFile, OSError) as e:
        return False, f'truncated or corrupt ({e})'
    return True, ''


def _step(path: str) -> int:
    m = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(m.group(1)) if m else -1


def find_resumable(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """The newest complete checkpoint in ``work_dir`` (the one ``last_checkpoint`` names
    first, then ``*.pth`` newest first) and the ones skipped, each with its reason."""
    candidates = []
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        if named:
            candidates.append(named if osp.isabs(named) else osp.join(work_dir, named))
    found = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.isfile(p)]
    found.sort(key=lambda p: (osp.getmtime(p), _step(p)), reverse=True)
    candidates += [p for p in found if p not in candidates]
    skipped = []
    for path in candidates:
        ok, why = is_complete_checkpoint(path)
        if ok:
            return path, skipped
        skipped.append(f'{path} ({why})')
    return None, skipped
