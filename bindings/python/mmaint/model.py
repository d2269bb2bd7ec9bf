"""mmaint.Model: a feed-forward network (mm_model.h)."""

import json
import os
from collections import namedtuple
from ctypes import byref, c_char_p, c_double, c_int, c_size_t, create_string_buffer

from . import _buffers as B
from ._handle import Owner
from ._lib import enum_from_name, fspath, lib, new_handle, raise_status, text

Layer = namedtuple("Layer", "index kind inputs outputs activation trainable")
Layer.__doc__ = ("Facts about one layer: kind ('dense', ...), widths, activation name, "
                 "trainable (False when frozen).")

SAFETENSORS_ALLOW_EXTRA = 1
SAFETENSORS_ROUND_F64 = 2

INIT = {"auto": 0, "he": 1, "xavier": 2}


def activation_value(name):
    return enum_from_name(lib.mm_activation_from_name, name, "activation")


def loss_value(name):
    return enum_from_name(lib.mm_loss_from_name, name, "loss")


class Model(Owner):
    """A feed-forward network.

    ``Model("784-256-128-10:relu", seed=42)`` builds a whole model from a spec;
    ``Model(784, seed=42)`` an empty one to extend with :meth:`add_dense`.
    ``Model.load(path)`` reads a model file. Arrays are row-major float32
    samples (see the package documentation for the accepted types).

    Thread safety (as the C library): read-only calls (forward, predict,
    evaluate, describe, save, the properties) may run from many threads at
    once while no thread mutates the model; the GIL is released during every
    library call, so they really run in parallel.
    """

    def __init__(self, spec, seed=0, *, loss=None):
        h = new_handle()
        if isinstance(spec, str):
            lib.mm_model_create_from_spec(byref(h), spec.encode(), seed)
        elif isinstance(spec, int) and not isinstance(spec, bool):
            if spec < 0:
                raise ValueError("input_dim must be >= 0, got %d" % spec)
            lib.mm_model_create(byref(h), spec, seed)
        else:
            raise TypeError("Model(spec or input_dim, seed): expected str or int, got %s"
                            % type(spec).__name__)
        self._own(h.value, lib.mm_model_free)
        if loss is not None:
            self.loss = loss

    @classmethod
    def _wrap(cls, ptr, free=None):
        self = cls.__new__(cls)
        self._own(ptr, free or lib.mm_model_free)
        return self

    @classmethod
    def load(cls, path):
        """Load a model file (validated: a bad file raises FormatError,
        ChecksumError, VersionError or InputOutputError)."""
        h = new_handle()
        lib.mm_model_load(byref(h), fspath(path))
        return cls._wrap(h.value)

    @classmethod
    def from_bytes(cls, data):
        """Load a model from the bytes of a model file (bytes-like; not kept)."""
        addr, n, keep = B.raw(data, "data")
        h = new_handle()
        lib.mm_model_load_buffer(byref(h), addr, n)
        return cls._wrap(h.value)

    @classmethod
    def from_onnx(cls, source):
        """Import an ONNX model: `source` is a path or the file's bytes
        (bytes-like). Unsupported graphs raise UnsupportedError naming the
        node; malformed files FormatError. See doc/ONNX.md for the mapping."""
        h = new_handle()
        if isinstance(source, (str, os.PathLike)):
            lib.mm_onnx_import(byref(h), fspath(source))
        else:
            addr, n, keep = B.raw(source, "source")
            lib.mm_onnx_import_buffer(byref(h), addr, n)
        return cls._wrap(h.value)

    def export_onnx(self, path):
        """Write the model as an ONNX file (opset 13), atomically. With a
        softmax_xent loss the graph ends with Softmax (= predict_proba)."""
        lib.mm_onnx_export(self._p(), fspath(path))

    @classmethod
    def from_safetensors(cls, source, arch=None, names=None, *, allow_extra=False,
                         round_f64=False):
        """Build a model from the weights in a safetensors file (a path or the
        file's bytes), e.g. a PyTorch state_dict saved with safetensors.

        `arch` is a spec ("784-256-10:relu"), or None to take it from the
        file's metadata (files written by export_safetensors or mmaint).
        `names` maps tensors to layers: None (automatic: nn.Sequential's
        "0.weight", "2.weight", ...), a pattern with {i} or {seq}
        ("net.{seq}"), or a comma-separated prefix per layer ("fc1,fc2").
        `allow_extra` ignores unused tensors; `round_f64` rounds float64
        values to float. Errors name the tensor (FormatError, ...)."""
        flags = ((SAFETENSORS_ALLOW_EXTRA if allow_extra else 0)
                 | (SAFETENSORS_ROUND_F64 if round_f64 else 0))
        a = None if arch is None else arch.encode()
        nm = None if names is None else names.encode()
        h = new_handle()
        if isinstance(source, (str, os.PathLike)):
            lib.mm_safetensors_import(byref(h), fspath(source), a, nm, flags)
        else:
            addr, n, keep = B.raw(source, "source")
            lib.mm_safetensors_import_buffer(byref(h), addr, n, a, nm, flags)
        return cls._wrap(h.value)

    def export_safetensors(self, path, names=None):
        """Write every layer's weights and biases as a plain safetensors file
        (F32 tensors "<prefix>.weight" [out, in] and "<prefix>.bias"; prefixes
        from `names`, default "layers.{i}"), with the architecture in the
        metadata. Atomic."""
        lib.mm_safetensors_export(self._p(), fspath(path),
                                  None if names is None else names.encode())

    def save(self, path):
        """Save to a model file, atomically (temporary file, fsync, rename)."""
        lib.mm_model_save(self._p(), fspath(path))

    def clone(self):
        """A deep copy (layers, weights, loss, lineage)."""
        h = new_handle()
        lib.mm_model_clone(self._p(), byref(h))
        return Model._wrap(h.value)

    __copy__ = clone

    def __deepcopy__(self, memo):
        return self.clone()

    # ---- building -------------------------------------------------------------

    def add_dense(self, units, activation="relu", init="auto"):
        """Append a dense layer; returns the model, so calls chain."""
        if init not in INIT:
            raise ValueError("init must be one of %s, got %r" % (", ".join(INIT), init))
        lib.mm_model_add_dense_init(self._p(), units, activation_value(activation), INIT[init])
        return self

    @property
    def loss(self):
        """The loss name: 'softmax_xent' or 'mse' (settable)."""
        return text(lib.mm_loss_name(lib.mm_model_loss(self._p())))

    @loss.setter
    def loss(self, name):
        lib.mm_model_set_loss(self._p(), loss_value(name))

    def set_leaky_slope(self, slope):
        """Negative slope of the leaky_relu layers, in [0, 1)."""
        lib.mm_model_set_leaky_slope(self._p(), slope)

    # ---- facts ------------------------------------------------------------------

    @property
    def input_dim(self):
        return lib.mm_model_input_dim(self._p())

    @property
    def output_dim(self):
        return lib.mm_model_output_dim(self._p())

    @property
    def num_layers(self):
        return lib.mm_model_num_layers(self._p())

    @property
    def num_params(self):
        """Trainable scalars (weights + biases)."""
        return lib.mm_model_num_params(self._p())

    @property
    def param_bytes(self):
        """Bytes held by the parameters as stored (less when pruned/quantized)."""
        return lib.mm_model_param_bytes(self._p())

    @property
    def num_nonzero(self):
        """Weights + biases that are not zero (pruned weights count as zero)."""
        return lib.mm_model_num_nonzero(self._p())

    def _index(self, index):
        """Layer index; negative counts from the end, as for lists."""
        if index < 0:
            index += lib.mm_model_num_layers(self._p())
            if index < 0:
                raise IndexError("layer index out of range")
        return index

    def layer(self, index):
        """Layer(index, kind, inputs, outputs, activation) of layer `index`."""
        index = self._index(index)
        kind, nin, nout, act = c_char_p(), c_size_t(), c_size_t(), c_int()
        lib.mm_model_layer_info(self._p(), index, byref(kind), byref(nin), byref(nout),
                                byref(act))
        return Layer(index, text(kind.value), nin.value, nout.value,
                     text(lib.mm_activation_name(act.value)), self.trainable(index))

    @property
    def layers(self):
        """A list of Layer(index, kind, inputs, outputs, activation)."""
        return [self.layer(i) for i in range(self.num_layers)]

    # ---- transfer learning ----------------------------------------------------

    def trainable(self, index):
        """False if layer `index` is frozen."""
        r = lib.mm_model_layer_trainable(self._p(), self._index(index))
        if r < 0:
            raise_status(lib.mm_last_error())
        return bool(r)

    def set_trainable(self, index, trainable=True):
        """Freeze (False) or unfreeze (True) layer `index`. Frozen layers keep
        their parameters (and optimizer state) bit-identical while the rest
        trains; the flag is saved in model files."""
        lib.mm_model_set_trainable(self._p(), self._index(index), 1 if trainable else 0)

    def freeze(self, *indices):
        """Freeze the given layers (all layers when none are given). Returns
        the model."""
        for i in indices or range(self.num_layers):
            self.set_trainable(i, False)
        return self

    def unfreeze(self, *indices):
        """Unfreeze the given layers (all layers when none are given)."""
        for i in indices or range(self.num_layers):
            self.set_trainable(i, True)
        return self

    def truncate(self, num_layers):
        """Keep the first `num_layers` layers. Optimizers made before need
        Optimizer.sync(). Returns the model."""
        lib.mm_model_truncate(self._p(), num_layers)
        return self

    def replace_head(self, units, activation="identity", seed=0):
        """Replace the last layer by a new trainable dense layer with `units`
        outputs (initialised from `seed`). Optimizers made before need
        Optimizer.sync(). Returns the model."""
        lib.mm_model_replace_head(self._p(), units, activation_value(activation), seed)
        return self

    def layer_sparsity(self, index):
        """Fraction of layer `index`'s weights that are zero or pruned."""
        out = c_double()
        lib.mm_model_layer_sparsity(self._p(), self._index(index), byref(out))
        return out.value

    def describe(self):
        """Multi-line description: layers, shapes, parameter counts, bytes."""
        p = self._p()
        need = c_size_t()
        lib.mm_model_describe(p, None, 0, byref(need))
        buf = create_string_buffer(need.value + 1)
        lib.mm_model_describe(p, buf, len(buf), None)
        return buf.value.decode("utf-8", "replace")

    def __repr__(self):
        if self._ptr is None:
            return "<mmaint.Model (closed)>"
        widths = [str(self.input_dim)] + [str(l.outputs) for l in self.layers]
        return "<mmaint.Model %s, %d params, loss %s>" % ("-".join(widths), self.num_params,
                                                           self.loss)

    # ---- lineage ----------------------------------------------------------------

    @property
    def lineage_json(self):
        """The lineage as JSON text (an array of events)."""
        return text(lib.mm_model_lineage(self._p()))

    @property
    def lineage(self):
        """The lineage: a list of events (dicts with 'op', 'time', ...)."""
        return json.loads(self.lineage_json or "[]")

    def add_lineage(self, op, detail=None):
        """Record an event; `detail` is a dict (or JSON object text) or None."""
        if detail is not None and not isinstance(detail, str):
            detail = json.dumps(detail)
        lib.mm_model_add_lineage(self._p(), op.encode(),
                                 None if detail is None else detail.encode())

    # ---- weights ------------------------------------------------------------------

    def _shape(self, index):
        l = self.layer(index)
        return l.index, l.outputs, l.inputs

    def get_weights(self, index):
        """(W, b) of layer `index`: W is outputs x inputs (PyTorch's nn.Linear
        layout), b has `outputs` values. Copies. Every layer kind gives the
        dense matrix it computes with: a sparse layer has zeros where it was
        pruned; a quantized layer gives its float master weights when it
        keeps them (keep_master=True), else (the default) its dequantized
        weights."""
        index, nout, nin = self._shape(index)
        w, wa = B.new_floats(nout, nin)
        b, ba = B.new_floats(nout)
        lib.mm_model_get_weights(self._p(), index, wa, nout * nin, ba, nout)
        return w, b

    def set_weights(self, index, weights=None, bias=None):
        """Replace the weights and/or bias of layer `index` (either may be
        None), in get_weights' layout. NaN/Inf raise NumericError. A sparse
        layer keeps its pruned weights at zero (values given there are
        dropped); a quantized layer without master weights is inference-only
        (UnsupportedError)."""
        index, nout, nin = self._shape(index)
        wb = None if weights is None else B.buf(weights, "f", "weights")
        bb = None if bias is None else B.buf(bias, "f", "bias")
        lib.mm_model_set_weights(self._p(), index, wb and wb.addr, wb.count if wb else 0,
                                 bb and bb.addr, bb.count if bb else 0)

    def get_gradients(self, index):
        """(dW, db) left by the last backward() for layer `index`."""
        index, nout, nin = self._shape(index)
        w, wa = B.new_floats(nout, nin)
        b, ba = B.new_floats(nout)
        lib.mm_model_get_gradients(self._p(), index, wa, nout * nin, ba, nout)
        return w, b

    # ---- inference and training passes ---------------------------------------------

    def forward(self, x):
        """Raw outputs of the last layer (logits for softmax_xent): n x outputs."""
        p = self._p()
        xa, n, xk = B.samples(x, lib.mm_model_input_dim(p))
        width = lib.mm_model_output_dim(p)
        out, addr = B.new_floats(n, width)
        lib.mm_model_forward(p, xa, n, addr)
        return out

    def predict_proba(self, x):
        """Class probabilities (softmax of the logits; raw outputs for MSE)."""
        p = self._p()
        xa, n, xk = B.samples(x, lib.mm_model_input_dim(p))
        width = lib.mm_model_output_dim(p)
        out, addr = B.new_floats(n, width)
        lib.mm_model_predict_proba(p, xa, n, addr)
        return out

    def predict(self, x):
        """Arg-max class of each sample: n int32 labels."""
        p = self._p()
        xa, n, xk = B.samples(x, lib.mm_model_input_dim(p))
        out, addr = B.new_ints(n)
        lib.mm_model_predict(p, xa, n, addr)
        return out

    def evaluate(self, x, labels=None, targets=None):
        """(mean loss, accuracy) over the samples; accuracy is NaN without
        labels. Cross-entropy needs labels; MSE uses targets or one-hot labels."""
        p = self._p()
        xa, n, xk = B.samples(x, lib.mm_model_input_dim(p))
        lb = B.labels(labels, n)
        tb = B.targets(targets, n, lib.mm_model_output_dim(p))
        loss, acc = c_double(), c_double()
        lib.mm_model_evaluate(p, xa, lb and lb.addr, tb and tb.addr, n, byref(loss),
                              byref(acc))
        return loss.value, acc.value

    def backward(self, x, labels=None, targets=None):
        """One forward + backward pass: returns the mean loss and leaves the
        gradients in the model (get_gradients). Mutates the model."""
        p = self._p()
        xa, n, xk = B.samples(x, lib.mm_model_input_dim(p))
        lb = B.labels(labels, n)
        tb = B.targets(targets, n, lib.mm_model_output_dim(p))
        loss = c_double()
        lib.mm_model_backward(p, xa, lb and lb.addr, tb and tb.addr, n, byref(loss))
        return loss.value
