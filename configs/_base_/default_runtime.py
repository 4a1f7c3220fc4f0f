# Shared by every config: where artifacts go, the seed, the device.
work_dir = None  # default: work_dirs/<config name>
seed = 0
device = 'auto'  # 'auto' -> cuda when available, else cpu
ops_backend = None  # 'cpp' | 'cuda' | 'torch': sets WSSS_OPS for the affinity ops unless already set
dist_timeout_min = 60  # torchrun: minutes a rank waits in a collective for the others (env WSSS_DIST_TIMEOUT_MIN)
