# Shared by every config: where artifacts go, the seed, the device.
work_dir = None  # default: work_dirs/<config name>
seed = 0
device = 'auto'  # 'auto' -> cuda when available, else cpu
