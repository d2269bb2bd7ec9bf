-- The Lua binding: migration formats (ONNX, plain safetensors files).
local T = require "testlib"
local mm = require "mmaint"

local X, Y = T.blobs(200, 6, 3, 5)
local train = mm.dataset(X, Y)

local function trained()
  local m = mm.model("6-12-3:relu", 4)
  assert(mm.optimizer(m, "adam", {learning_rate = 0.01, epochs = 2}):fit(train))
  return m
end

local function max_diff(a, b)
  local d = 0
  for i = 1, #a do d = math.max(d, math.abs(a[i] - b[i])) end
  return d
end

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

T.test("ONNX: export, import, same outputs; errors", function()
  local m = trained()
  local path = T.tmpname(".onnx")
  if not mm.onnx_available() then
    T.fails("MM_E_UNSUPPORTED", nil, m:export_onnx(path))
    T.fails("MM_E_UNSUPPORTED", nil, mm.import_onnx(path))
    print("  (this library is built without ONNX: only the unsupported path is tested)")
    return
  end
  T.eq(m:export_onnx(path), m)
  local back = assert(mm.import_onnx(path))
  local bytes = read_all(path)
  os.remove(path)
  T.eq(back:num_layers(), 2)
  T.eq(back:loss(), "softmax_xent")
  local xt = mm.tensor(X)
  T.ok(max_diff(m:predict_proba(xt), back:predict_proba(xt)) < 1e-5, "same probabilities")
  T.ok(back:lineage():find("onnx", 1, true), "lineage records the import")
  local from_buf = assert(mm.import_onnx_buffer(bytes))
  T.ok(max_diff(m:forward(xt), from_buf:forward(xt)) < 1e-5, "buffer import")
  T.fails("MM_E_FORMAT", nil, mm.import_onnx_buffer("\8\1\18\255garbage"))
  T.fails("MM_E_IO", nil, mm.import_onnx("/nonexistent/model.onnx"))
  T.fails("MM_E_IO", nil, m:export_onnx("/nonexistent-dir/m.onnx"))
  T.fails("MM_E_STATE", nil, mm.model(6, 1):export_onnx(T.tmpname(".onnx")))
end)

T.test("safetensors: export, import by metadata, names and arch; errors", function()
  local m = trained()
  local path = T.tmpname(".safetensors")
  T.eq(m:export_safetensors(path, "fc1,out"), m)
  local back = assert(mm.import_safetensors(path))           -- architecture from metadata
  local xt = mm.tensor(X)
  T.eq(max_diff(m:forward(xt), back:forward(xt)), 0, "exact weights")
  local named = assert(mm.import_safetensors(path, {arch = "6-12-3:relu", names = "fc1,out"}))
  T.eq(max_diff(m:forward(xt), named:forward(xt)), 0)
  local bytes = read_all(path)
  local from_buf = assert(mm.import_safetensors_buffer(bytes, {names = "fc1,out"}))
  T.eq(from_buf:layer(2).outputs, 3)
  T.fails("MM_E_FORMAT", nil, mm.import_safetensors(path, {arch = "6-12-3:relu", names = "a,b"}))
  T.fails("MM_E_INVALID_ARGUMENT", nil, mm.import_safetensors(path, {arch = "6-x"}))
  T.raises("unknown option 'arc'", mm.import_safetensors, path, {arc = "6-12-3"})
  T.raises("option 'names' must be a string", mm.import_safetensors, path, {names = 3})
  os.remove(path)
  T.fails("MM_E_INVALID_ARGUMENT", nil, m:export_safetensors(path, "only_one"))
  T.fails("MM_E_IO", nil, mm.import_safetensors("/nonexistent/w.safetensors"))
  T.fails("MM_E_FORMAT", nil, mm.import_safetensors_buffer("\1\0\0\0\0\0\0\0{"))
  -- extra tensors: refused unless allowed
  local big = mm.model("6-12-3:relu", 1)
  big:export_safetensors(path)
  T.fails("MM_E_FORMAT", nil, mm.import_safetensors(path, {arch = "6-12", names = "layers.{i}"}))
  T.ok(mm.import_safetensors(path, {arch = "6-12", names = "layers.{i}", allow_extra = true}),
       "allow_extra ignores the unused layer")
  os.remove(path)
end)

T.run()
