"""What machine this is, for the figures that tools print (benchmarks, checks)."""
import platform
from typing import List, Tuple


def cpu_info() -> Tuple[str, str, List[str]]:
    """(model name, ``'family F model M'``, the CPU's bf16 instruction sets) from
    /proc/cpuinfo; the platform's guess and empty fields elsewhere."""
    fields = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if ':' in line:
                    key, value = (s.strip() for s in line.split(':', 1))
                    fields.setdefault(key, value)
    except OSError:
        pass
    name = fields.get('model name') or platform.processor() or platform.machine()
    family = f'family {fields["cpu family"]} model {fields["model"]}' \
        if 'cpu family' in fields and 'model' in fields else ''
    flags = fields.get('flags', '').split()
    return name, family, [f for f in ('avx512_bf16', 'amx_bf16') if f in flags]


def cpu_name() -> str:
    """The CPU's model name."""
    return cpu_info()[0]
