"""In-process parts of data-parallel training: SyncBatchNorm conversion and per-rank stream
restore. The multi-process gloo runs live in tests/integration/test_ddp.py."""

import pytest
import torch

from ganzoo.errors import ConfigError
from ganzoo.training import distributed


def test_sync_batchnorm_is_refused_on_cpu_and_a_no_op_for_one_process():
    variant_nets = {"d": torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))}
    distributed.convert_sync_batchnorm(variant_nets, torch.device("cpu"), world=1)
    assert isinstance(variant_nets["d"][1], torch.nn.BatchNorm2d)
    with pytest.raises(ConfigError, match="sync_batchnorm needs CUDA"):
        distributed.convert_sync_batchnorm(variant_nets, torch.device("cpu"), world=2)


def test_rank_state_restores_each_ranks_own_streams():
    saved = {"sampler": "s0", "rng": "r0", "acc": {},
             "ranks": [{"sampler": "s0", "rng": "r0", "acc": {}}, {"sampler": "s1", "rng": "r1", "acc": {}}]}
    from ganzoo.training.resume import rank_state as _rank_state

    assert _rank_state(saved, distributed.DistContext(1, 2, False))["sampler"] == "s1"
    # Another process count: rank 0 continues the checkpoint's streams, the others keep fresh ones.
    assert _rank_state(saved, distributed.DistContext(0, 3, False))["sampler"] == "s0"
    assert "sampler" not in _rank_state(saved, distributed.DistContext(2, 3, False))


@pytest.mark.gpu
def test_sync_batchnorm_converts_on_cuda_under_two_ranks():
    nets = {"d": torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))}
    distributed.convert_sync_batchnorm(nets, torch.device("cuda"), world=2)
    assert isinstance(nets["d"][1], torch.nn.SyncBatchNorm)
