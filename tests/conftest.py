"""Two pytest-xdist workers share two cores: one torch/BLAS thread each avoids oversubscription."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
