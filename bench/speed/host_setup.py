"""The speed benchmark's set-up: ComfyUI and the pack imported in-process, and the member models
(random SD1.5-format UNets loaded by ComfyUI's own loader, with forward hooks that count their calls
and time the CPU spent inside them)."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

from devtools import reliability_models, tiny_models
from devtools.host import check_comfyui_origin, import_pack, put_comfyui_first

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
TOKENS, WIDTH = 77, 768

# The full SD1.5 UNet, exactly the SD15 entry of comfy/model_detection.py (unet_config_from_diffusers_unet);
# model_detection reads it back as supported_models.SD15 (checked in build_members).
SD15_UNET_CONFIG = dict(
    use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
    adm_in_channels=None, in_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], channel_mult=[1, 2, 4, 4], transformer_depth_middle=1,
    use_linear_in_transformer=False, context_dim=768, num_heads=8,
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    use_temporal_attention=False, use_temporal_resblock=False,
)
MEMBER_NAMES = "abcdefgh"


class Host:
    """Imported ComfyUI modules and the pack (imported as `amdm_pack`, as ComfyUI imports a pack)."""

    def __init__(self, device: str, threads: int | None):
        try:
            self._setup(device, threads)
        except ModuleNotFoundError as e:
            raise SystemExit(f"cannot import {e.name!r} (needed by ComfyUI or the pack): install it, or carry its "
                             f"wheel (bench/speed/prepare_gpu_carry.sh, see bench/README_speed.md)") from e

    def _setup(self, device: str, threads: int | None):
        # devtools.host's one rule: ComfyUI on the CPU unless AMDM_GPU=1 (set here from --device)
        os.environ["AMDM_GPU"] = "1" if device == "cuda" else "0"
        self.comfyui_path = self._comfyui_first_on_path()
        import torch
        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        self._import_comfyui(device)
        self._import_pack()
        self.comfyui_version = self._comfyui_version()

    @staticmethod
    def _comfyui_first_on_path() -> Path:
        try:
            return put_comfyui_first()
        except FileNotFoundError as e:
            raise SystemExit(str(e)) from None

    def _import_comfyui(self, device: str):
        if device == "cuda" and not self.torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch.cuda.is_available() is False")
        import comfy.model_management
        import comfy.sd
        import comfy.utils
        import nodes
        try:
            check_comfyui_origin(self.comfyui_path)
        except ImportError as e:
            raise SystemExit(str(e)) from None
        comfy.utils.PROGRESS_BAR_ENABLED = False     # no tqdm bars in either variant (see README_speed.md)
        self.mm, self.sd, self.nodes = comfy.model_management, comfy.sd, nodes
        self.device = comfy.model_management.get_torch_device()
        if device == "cuda" and self.device.type != "cuda":
            raise SystemExit(f"ComfyUI chose {self.device}, not a CUDA device")

    def _import_pack(self):
        import_pack()
        import amdm_pack.amdm_core as core
        import amdm_pack.nodes.node_member as node_member
        import amdm_pack.nodes.node_sampler as node_sampler
        import amdm_pack.nodes.settings as settings
        self.core, self.node_member, self.node_sampler, self.settings = core, node_member, node_sampler, settings

    @staticmethod
    def _comfyui_version() -> str:
        try:
            import comfyui_version
            return comfyui_version.__version__
        except Exception:  # noqa: BLE001
            return "unknown"

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    @property
    def clock_name(self) -> str:
        """The clock the ratios use: on a CPU the process's CPU time (torch runs on one thread, so it
        is the work done, and a shared machine's time slicing drops out); on a GPU wall time."""
        return "wall" if self.device.type == "cuda" else "cpu"

    def clock(self) -> float:
        return time.perf_counter() if self.device.type == "cuda" else time.process_time()


class UnetClock:
    """CPU time spent inside the members' UNet forwards (forward pre/post hooks), so the time a run
    spends OUTSIDE the UNet -- the host's and the pack's orchestration: samplers, conds, CFG, the
    aggregation -- can be compared without the UNet's (large, noisy) cost. CPU only: on a GPU the
    forward is asynchronous and only a synchronising hook could time it."""

    def __init__(self, enabled: bool):
        self.enabled, self.seconds, self._start = enabled, 0.0, None


class Member:
    def __init__(self, name, patcher, positive, negative, clock: UnetClock):
        self.name, self.patcher, self.positive, self.negative = name, patcher, positive, negative
        self.calls, self.clock = 0, clock
        dm = patcher.model.diffusion_model
        self.hooks = [dm.register_forward_pre_hook(self._pre), dm.register_forward_hook(self._post)]

    def _pre(self, module, args):
        self.calls += 1
        if self.clock.enabled:
            self.clock._start = time.process_time()

    def _post(self, module, args, output):
        if self.clock.enabled and self.clock._start is not None:
            self.clock.seconds += time.process_time() - self.clock._start
            self.clock._start = None


def seeded_conditioning(torch, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, TOKENS, WIDTH, generator=g), {"pooled_output": torch.randn(1, WIDTH, generator=g)}]]


def empty_conditioning(torch):
    return [[torch.zeros(1, TOKENS, WIDTH), {"pooled_output": torch.zeros(1, WIDTH)}]]


def _sd15_state_dict(host: Host, seed: int, device):
    """A random full-size SD1.5 UNet from comfy's own UNetModel class (plain torch layers with their
    default init, as devtools/tiny_models.py does for the tiny one), the output conv rescaled
    so eps predictions have std ~1; fp16 state dict. Built on `device` (fast on a GPU)."""
    torch = host.torch
    import comfy.ldm.modules.diffusionmodules.openaimodel as oam
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        unet = oam.UNetModel(**SD15_UNET_CONFIG, dtype=torch.float32, device=device,
                             operations=_make_tiny_models()._init_ops()).eval().to(device)
    gen = torch.Generator().manual_seed(400)
    x = torch.randn(1, 4, 8, 8, generator=gen).to(device)
    ctx = torch.randn(1, TOKENS, WIDTH, generator=gen).to(device)
    with torch.no_grad():
        std = unet(x, timesteps=torch.tensor([500.0], device=device), context=ctx).float().std().item()
        if math.isfinite(std) and std > 0:
            scale = 2.0 ** round(math.log2(1.0 / std))
            unet.out[2].weight.mul_(scale)
            unet.out[2].bias.mul_(scale)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in unet.state_dict().items()}
    del unet
    return sd


def _make_tiny_models():
    """devtools/tiny_models.py: the test suite's tiny SD1.5-format UNet and its layer init."""
    return tiny_models


def _member_state_dict(host: Host, kind: str, index: int):
    if kind == "tiny":
        mtm = _make_tiny_models()
        return mtm.unet_state_dict(mtm.variant_seed(MEMBER_NAMES[index]))
    if kind == "sd3":   # the flow family: the test suite's tiny SD3-type MMDiT, one seed per member
        return reliability_models.sd3_state_dict(reliability_models.SD3_SEED + index)
    return _sd15_state_dict(host, 1000 + index, host.device)


DETECTED_AS = {"tiny": "SD15", "sd15": "SD15", "sd3": "SD3"}


def latent_channels(member: Member) -> int:
    return member.patcher.get_model_object("latent_format").latent_channels


def _load_checked(host: Host, state_dict, kind: str):
    """The model through ComfyUI's own loader, which must read it back as the intended family."""
    patcher = host.sd.load_diffusion_model_state_dict(state_dict)
    if patcher is None:
        raise SystemExit(f"ComfyUI did not recognise the generated {kind} UNet")
    detected = type(patcher.model.model_config).__name__
    if detected != DETECTED_AS[kind]:
        raise SystemExit(f"the generated {kind} model was detected as {detected}, not {DETECTED_AS[kind]}")
    return patcher


def build_members(host: Host, kind: str, count: int) -> list[Member]:
    """`count` members with distinct random UNets and conditionings; one UnetClock shared by all."""
    torch = host.torch
    members = []
    clock = UnetClock(enabled=host.device.type != "cuda")
    for i in range(count):
        patcher = _load_checked(host, _member_state_dict(host, kind, i), kind)
        members.append(Member(MEMBER_NAMES[i], patcher, seeded_conditioning(torch, i), empty_conditioning(torch),
                              clock))
        if host.device.type == "cuda":
            torch.cuda.empty_cache()
    return members
