"""INT8 for the CPU target: calibrate once, write U8S8 Q/DQ, check it against FP32 on the calibration data.

Which ops to quantize depends on the model (:func:`choose_scheme`): every op ONNX Runtime quantizes
for CNNs (the fast QLinearConv / QLinearAdd graph), the weighted ops and Softmax for attention
models. The
choice is then *checked*: the INT8 graph, run by ONNX Runtime as deployed (all its fusions on), is
compared with the FP32 graph on up to :data:`CHECK_SAMPLES` calibration samples by the same rule
``edgec verify`` applies (top-1 agreement >= 98 % for class scores, max abs error within 5 % of the
range otherwise). If it fails, the other scheme is tried and the better one kept; the report lists
both measurements. (On a TransformerEncoder exported by the dynamo exporter, ORT's extended graph
fusions turned a graph quantized on its weighted ops only into one whose logits were off by 1.5,
while the same graph without those fusions was within 0.09 (onnxruntime 1.31.1): a check catches
such cases.)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.onnxlib.feeds import Feeds as _Feeds

if TYPE_CHECKING:
    from edgec.data import Dataset
    from edgec.onnxlib import QdqScheme
    from edgec.program import Program
    from edgec.progress import Progress

log = logging.getLogger(__name__)

#: calibration samples the INT8 graph is checked on
CHECK_SAMPLES = 32
#: what the check asks (the defaults of ``edgec verify``)
MIN_AGREEMENT = 0.98


class Feeds(_Feeds):
    """:class:`edgec.onnxlib.feeds.Feeds` keeping the first :data:`CHECK_SAMPLES` samples for the check."""

    def __init__(
        self, data: Dataset, shape: tuple[int, ...], batch: int | None, limit: int, progress: Progress
    ) -> None:
        super().__init__(data, shape, batch, limit, progress, keep=CHECK_SAMPLES)


def choose_scheme(model_path: Path) -> tuple[QdqScheme, str]:
    """U8S8 on every op ORT quantizes; for an attention model (a graph with LayerNormalization or a
    MatMul of two activations, q k^T) on the weighted ops and Softmax only, as its residual stream
    loses accuracy in uint8 (see :data:`edgec.onnxlib.qdq.U8S8_ATTENTION`)."""
    import onnx

    from edgec.onnxlib import U8S8, U8S8_ATTENTION

    graph = onnx.load(str(model_path), load_external_data=False).graph
    consts = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    layer_norm = any(n.op_type == "LayerNormalization" for n in graph.node)
    act_matmul = any(n.op_type == "MatMul" and all(i not in consts for i in n.input) for n in graph.node)
    if layer_norm or act_matmul:
        what = "LayerNormalization" if layer_norm else "a MatMul of two activations"
        return U8S8_ATTENTION, (
            f"attention model ({what}): Conv / Gemm / MatMul / Softmax quantized; residual Adds "
            "and normalisation kept in float (uint8 costs them accuracy)"
        )
    return U8S8, "every operator ONNX Runtime quantizes (U8S8)"


def quantize(
    fp32: Path,
    final: Path,
    data: Dataset,
    shape: tuple[int, ...],
    batch: int | None,
    *,
    method: str,
    limit: int,
    progress: Progress,
    program: Program | None = None,
) -> dict[str, Any]:
    """Write the INT8 graph of ``fp32`` to ``final``; returns the report's ``quantization`` section.

    Weights a compression pass left on a grid (``program.quant``) keep it (:mod:`.learned`)."""
    from edgec.onnxlib import U8S8, U8S8_ATTENTION, calibrate, preprocess, write_qdq

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        notes = preprocess(fp32, pre)
        feeds = Feeds(data, shape, batch, limit, progress)
        ranges = calibrate(pre, feeds, scheme=U8S8, method=method)  # every tensor either scheme needs
        preferred, why = choose_scheme(pre)
        notes.append(why)
        learned: dict[str, Any] = {}
        learned_account: dict[str, Any] = {}
        if program is not None:
            from edgec.onnxlib.learned import learned_weight_params

            learned, learned_account = learned_weight_params(pre, program)
        x = np.stack(feeds.kept)
        ref = _outputs(pre, x, batch)
        schemes = [preferred, U8S8 if preferred is U8S8_ATTENTION else U8S8_ATTENTION]
        tried: list[dict[str, Any]] = []
        for scheme in schemes:
            stats = write_qdq(pre, final, scheme, ranges=ranges, params=learned)
            result = _compare(_outputs(final, x, batch), ref)
            tried.append({"scheme": scheme.name, **result})
            if result["passed"]:
                break
        else:
            best = max(range(len(tried)), key=lambda i: _score(tried[i]))
            if best != len(tried) - 1:
                stats = write_qdq(pre, final, schemes[best], ranges=ranges, params=learned)
            log.warning(
                "the INT8 graph disagrees with FP32 on the calibration data (%s); `edgec verify` will "
                "say whether it is acceptable; try --calib-method percentile, or compile in FP32",
                ", ".join(f"{t['scheme']}: {t['summary']}" for t in tried),
            )
    stats.notes = notes + stats.notes
    return {
        **stats.to_dict(),
        "learned_weights": learned_account,
        "calibration_method": method,
        "calibration_samples": feeds.count,
        "check": {
            "against": "the FP32 ONNX graph on calibration samples, ONNX Runtime with all its fusions",
            "samples": len(x),
            "min_agreement": MIN_AGREEMENT,
            "schemes": tried,
            "chosen": stats.scheme.name,
        },
    }


def _outputs(path: Path, x: np.ndarray, batch: int | None) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    from edgec.targets.cpu.session import run_batched

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    inp = sess.get_inputs()[0].name
    outs = run_batched(lambda b: sess.run(None, {inp: b}), x, batch)
    return dict(zip(names, outs, strict=True))


def _compare(out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, Any]:
    from edgec.target import compare_outputs

    res = compare_outputs(out, ref, None, min_agreement=MIN_AGREEMENT)
    keep = ("top1_agreement", "max_abs_error")
    return {
        "passed": res.passed,
        "summary": res.summary,
        **{k: res.metrics[k] for k in keep if k in res.metrics},
    }


def _score(t: dict[str, Any]) -> tuple[float, float]:
    return (t.get("top1_agreement", 0.0), -t.get("max_abs_error", 0.0))
