"""What runs a chunk sampler (ChunkSampler or InpaintingSampler in policy.py) at every chunk: the same arithmetic,
with less work per operation than calling the module from Python.

- "onnxruntime" (the default): the sampler is exported to ONNX once, when a runner is built (about a second), and
  ONNX Runtime runs the graph. The denoising network's operations are tiny (a 1 x 256 row through 256 x 256
  matrices), so what a chunk costs is mostly the cost of each operation, not its arithmetic: ONNX Runtime's is
  lower than TorchScript's (bench/results/sampling.md measures both against the FLOP floor).
- "torch": the sampler traced by torch.jit with its weights frozen in. No extra dependency.

Both take and return torch tensors and give the same chunk to float rounding (test/test_model.py). The noise comes
in as an input, drawn by the runner's torch generator, so the engine does not change which noise an episode uses.
"""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from minivla_core.config import check_value


def trace(sampler: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> nn.Module:
    """The sampler traced on these example inputs, with its weights frozen in; the plain module if tracing fails.

    torch.jit is deprecated in favour of torch.compile, which on a CPU needs a C++ compiler at run time (not every
    robot computer has one); the torch pinned in requirements.txt traces, and a torch that no longer does still
    samples, only slower."""
    with torch.no_grad(), warnings.catch_warnings():
        # The noise levels and their coefficients become constants of the graph: that is the point.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.freeze(torch.jit.trace(sampler, example_inputs, check_trace=False))
        except (RuntimeError, AttributeError) as exc:
            warnings.warn(f"sampling without torch.jit ({exc}): the same actions, more slowly")
            return sampler


class OnnxRuntimeSampler:
    """A sampler module exported to ONNX and run by an ONNX Runtime session on `threads` CPU threads."""

    def __init__(self, sampler: nn.Module, example_inputs: tuple[torch.Tensor, ...], threads: int):
        import onnxruntime

        self.input_names = [f"input{i}" for i in range(len(example_inputs))]
        graph = io.BytesIO()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on constants, as in trace()
            # The TorchScript-based exporter: it needs only the onnx package; the newer one (dynamo) also needs
            # onnxscript and takes several times longer for this graph.
            torch.onnx.export(sampler, example_inputs, graph, dynamo=False, input_names=self.input_names,
                              output_names=["chunk"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3  # errors only: its notes on unused initializers are not for a user
        self.session = onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {name: tensor.detach().numpy() for name, tensor in zip(self.input_names, inputs)}
        return torch.from_numpy(self.session.run(None, feed)[0])


def build(sampler: nn.Module, example_inputs: tuple[torch.Tensor, ...], engine: str) -> nn.Module | OnnxRuntimeSampler:
    """The sampler as `engine` runs it. ONNX Runtime not installed, or an export it cannot take: TorchScript, with a
    warning that says why (the same chunks, more slowly)."""
    check_value("policy_node.engine", engine, "engine")  # a bare name: PolicyRunner(engine=...) may be given any
    sampler = sampler.eval()
    if engine == "onnxruntime":
        try:
            return OnnxRuntimeSampler(sampler, example_inputs, max(1, torch.get_num_threads()))
        except Exception as exc:  # ImportError, or an exporter or runtime error: both engines compute the same
            warnings.warn(f"sampling with TorchScript instead of ONNX Runtime ({type(exc).__name__}: {exc})")
    return trace(sampler, example_inputs)
