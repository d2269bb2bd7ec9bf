-- The Lua binding end to end: train a small model, update it online, save,
-- load, resume exactly, prune, quantize; Fashion-MNIST when installed.
local T = require "testlib"
local mm = require "mmaint"

local function same_tensor(a, b, what)
  T.eq(#a, #b, what .. " length")
  for i = 1, #a do
    if a[i] ~= b[i] then error(string.format("%s[%d]: %s ~= %s", what, i, a[i], b[i]), 2) end
  end
end

local function same_weights(m1, m2)
  T.eq(m1:num_layers(), m2:num_layers(), "layers")
  for l = 1, m1:num_layers() do
    local w1, b1 = m1:weights(l)
    local w2, b2 = m2:weights(l)
    same_tensor(w1, w2, "layer " .. l .. " weights")
    same_tensor(b1, b2, "layer " .. l .. " bias")
  end
end

local X, Y = T.blobs(600, 8, 3, 11)
local train = mm.dataset(X, Y)
local test_x, test_y = T.blobs(300, 8, 3, 11) -- same centres, new noise

T.test("train a small model with fit (validation, callback)", function()
  local m = mm.model("8-16-3:relu", 7)
  local val = mm.dataset(test_x, test_y)
  local o = mm.optimizer(m, "adam", {learning_rate = 0.01, batch_size = 32, epochs = 4})
  local epochs, batches = 0, 0
  local res = assert(o:fit(train, val, function(p)
    if p.event == "epoch_end" then
      epochs = epochs + 1
      T.eq(p.epoch, epochs)
      T.ok(p.val_accuracy >= 0 and p.val_accuracy <= 1, "val accuracy reported")
    else
      batches = batches + 1
      T.eq(p.val_loss, nil)
    end
  end))
  T.eq(epochs, 4)
  T.eq(batches, 4 * math.ceil(600 / 32))
  T.eq(res.step, batches)
  local loss, acc = m:evaluate(test_x, test_y)
  T.ok(acc > 0.9, "test accuracy " .. acc)
  T.ok(loss < 0.5, "test loss " .. loss)
  T.near(acc, res.val_accuracy, 1e-9, "evaluate agrees with fit's validation")
  local loss2, acc2 = m:evaluate(val)
  T.eq(loss2, loss); T.eq(acc2, acc)
  -- predictions: tables in, tables out; tensors in, tensors out
  local pred = m:predict(test_x)
  T.eq(#pred, 300)
  local hits = 0
  for i = 1, 300 do if pred[i] == test_y[i] then hits = hits + 1 end end
  T.near(hits / 300, acc, 1e-9, "predict agrees with evaluate")
  local proba = m:predict_proba(mm.tensor(test_x))
  T.eq(tostring(proba), "mmaint.tensor float32 [300 x 3]")
  T.near(proba[1] + proba[2] + proba[3], 1, 1e-5, "probabilities sum to 1")
  local logits = m:forward(test_x[1])
  T.eq(#logits, 3)
  local nested = m:forward({test_x[1], test_x[2]})
  T.eq(#nested, 2); T.eq(#nested[2], 3)
  T.near(nested[1][2], logits[2], 0, "flat and nested inputs agree")
end)

T.test("online update: one sample per step, tables and tensor views agree", function()
  local m = mm.model("8-16-3:relu", 3)
  local m2 = m:clone()
  local o = mm.optimizer(m, "sgd", {learning_rate = 0.05})
  local o2 = mm.optimizer(m2, "sgd", {learning_rate = 0.05})
  local xt, yt = mm.tensor(X), mm.tensor(Y, "int32")
  local _, acc0 = m:evaluate(test_x, test_y)
  local first, last = 0, 0
  for i = 1, 600 do
    local l1 = o:step(X[i], Y[i])                 -- Lua tables
    local l2 = o2:step(xt:view(i), yt[i])         -- tensor view, no copy
    T.eq(l1, l2, "loss of step " .. i)
    if i <= 50 then first = first + l1 elseif i > 550 then last = last + l1 end
  end
  T.eq(o:steps(), 600)
  T.ok(last < first / 2, "online loss falls: " .. first .. " -> " .. last)
  same_weights(m, m2)
  local _, acc1 = m:evaluate(test_x, test_y)
  T.ok(acc1 > 0.9 and acc1 > acc0, "online accuracy " .. acc0 .. " -> " .. acc1)
end)

T.test("save and load: same predictions, lineage, buffer loading", function()
  local m = mm.model("8-16-3:relu", 5)
  local o = mm.optimizer(m, "adam")
  assert(o:fit(train))
  local path = T.tmpname(".mmf")
  assert(m:save(path))
  local back <close> = assert(mm.load(path))
  same_weights(m, back)
  same_tensor(m:forward(mm.tensor(test_x)), back:forward(mm.tensor(test_x)), "logits")
  T.ok(back:lineage():find('"op"', 1, true), "lineage survives the file")
  T.eq(back:describe(), m:describe())
  local fh = assert(io.open(path, "rb"))
  local from_buf = assert(mm.load_buffer(fh:read("a")))
  fh:close()
  os.remove(path)
  same_weights(m, from_buf)
end)

T.test("optimizer state: save, load, continue == never stopping", function()
  local a = mm.model("8-16-3:relu", 9)
  local b = a:clone()
  local oa = mm.optimizer(a, "adam", {learning_rate = 0.01, batch_size = 50, epochs = 2, seed = 4})
  local ob = mm.optimizer(b, "adam", {learning_rate = 0.01, batch_size = 50, epochs = 2, seed = 4})
  assert(oa:fit(train)); assert(oa:fit(train))         -- uninterrupted: 4 epochs
  assert(ob:fit(train))
  local path = T.tmpname(".mmf")
  assert(ob:save(path))
  ob:close(); b:close()
  local b2 = assert(mm.load(path))
  local ob2 = assert(mm.load_optimizer(b2, path))
  os.remove(path)
  T.eq(ob2:kind(), "adam")
  T.eq(ob2:get("batch_size"), 50)
  assert(ob2:fit(train))
  T.eq(ob2:steps(), oa:steps())
  same_weights(a, b2)
end)

T.test("weights and gradients in and out", function()
  local m = mm.model(3, 1)
  m:add_dense(2, "identity")
  T.eq(m:set_weights(1, {{1, 2, 3}, {4, 5, 6}}, {0.5, -0.5}), m)
  local out = m:forward({1, 1, 1})
  T.near(out[1], 6.5, 1e-6); T.near(out[2], 14.5, 1e-6)
  local w, b = m:weights(1)
  T.eq(tostring(w), "mmaint.tensor float32 [2 x 3]")
  T.eq(w[6], 6); T.eq(b[2], -0.5)
  w[1] = 10
  assert(m:set_weights(1, w))          -- a tensor; bias kept
  T.near(m:forward({1, 0, 0})[1], 10.5, 1e-6)
  m:set_loss("mse")
  local loss = m:backward({1, 0, 0}, nil, {0, 0})
  T.near(loss, (10.5 ^ 2 + 3.5 ^ 2) / 2, 1e-4)  -- outputs 10.5, 3.5
  local gw, gb = m:gradients(1)
  T.ok(gw[1] ~= 0 and gb[1] ~= 0, "gradients left by backward")
  local l = m:layer(1)
  T.eq(l.kind, "dense"); T.eq(l.inputs, 3); T.eq(l.outputs, 2); T.eq(l.activation, "identity")
  T.eq(m:num_params(), 8)
end)

T.test("pruning: one shot, gradual with an attached pruner, finalize", function()
  local m = mm.model("8-32-3:relu", 2)
  local o = mm.optimizer(m, "sgd", {learning_rate = 0.05})
  assert(o:fit(train))
  local p = mm.pruner("magnitude", {sparsity = 0.5})
  assert(p:apply(m))
  T.near(m:layer_sparsity(1), 0.5, 0.01)
  T.ok(m:num_nonzero() < m:num_params(), "fewer non-zeros")
  -- gradual: the optimizer keeps the pruner alive while attached
  local m2 = mm.model("8-32-3:relu", 2)
  local o2 = mm.optimizer(m2, "adam", {learning_rate = 0.01, batch_size = 20, epochs = 4})
  local g = mm.pruner("magnitude_global", {sparsity = 0.8, schedule = 1, begin_step = 0,
                                           end_step = 40, frequency = 10})
  T.eq(g:attach(o2), g)
  g = nil
  collectgarbage(); collectgarbage()
  assert(o2:fit(train))
  local s = 1 - (m2:num_nonzero() - 35) / (m2:num_params() - 35) -- biases excluded (32 + 3)
  T.ok(s > 0.7, "gradual pruning reached sparsity " .. s)
  local _, acc = m2:evaluate(test_x, test_y)
  T.ok(acc > 0.8, "pruned accuracy " .. acc) -- chance is 0.33
  -- structured: neurons removed, layers shrink
  local m3 = m:clone()
  local sp = mm.pruner("neuron_l2", {sparsity = 0.5})
  assert(sp:apply(m3))
  assert(sp:finalize(m3))
  T.eq(m3:layer(1).outputs, 16)
  T.near(sp:sparsity_at(0), 0.5, 1e-12)
end)

T.test("quantization: static int8 with calibration, report", function()
  local m = mm.model("8-32-3:relu", 2)
  assert(mm.optimizer(m, "adam", {learning_rate = 0.01, epochs = 3}):fit(train))
  local _, acc_f = m:evaluate(test_x, test_y)
  local q = mm.quantizer("int8_static", {observer = "minmax", per_channel = true})
  assert(q:calibrate(m, train))
  assert(q:apply(m))
  T.ok(m:layer(1).kind ~= "dense", "layer kind changed to " .. m:layer(1).kind)
  local _, acc_q = m:evaluate(test_x, test_y)
  T.ok(acc_q > acc_f - 0.05, "int8 accuracy " .. acc_q .. " vs float " .. acc_f)
  T.ok(q:report():find('"layers"', 1, true), "report")
  -- accuracy-aware
  local m2 = mm.model("8-32-3:relu", 2)
  assert(mm.optimizer(m2, "adam", {learning_rate = 0.01, epochs = 3}):fit(train))
  local _, acc_f2 = m2:evaluate(test_x, test_y)
  local q2 = mm.quantizer("int8_dynamic", {max_drop = 0.01})
  local acc = assert(q2:apply_with_tolerance(m2, test_x, test_y))
  T.ok(acc >= acc_f2 - 0.01 and acc > 0.9, "accuracy-aware " .. acc .. " vs float " .. acc_f2)
  -- a layer kept in float
  local m3 = mm.model("8-32-3:relu", 2)
  local q3 = mm.quantizer("fp16")
  assert(q3:set_layer(2, false))
  assert(q3:apply(m3))
  T.eq(m3:layer(2).kind, "dense")
end)

T.test("transfer learning: frozen body, new head, per-layer lr, sync, guards", function()
  local m = mm.model("8-16-16-3:relu", 12)
  assert(mm.optimizer(m, "adam", {learning_rate = 0.01, epochs = 3}):fit(train))
  local body_w = m:weights(1)
  -- a new task with 2 classes on the same inputs: labels 0/1
  local y2 = {}
  for i = 1, #Y do y2[i] = Y[i] == 2 and 1 or 0 end
  local ds2 = mm.dataset(X, y2)
  T.eq(m:replace_head(2, "identity", 7), m)
  T.eq(m:output_dim(), 2)
  T.eq(m:set_trainable(1, false), m)
  T.eq(m:trainable(1), false); T.eq(m:trainable(2), true)
  T.eq(m:layer(1).trainable, false)
  T.fails("MM_E_OUT_OF_RANGE", nil, m:set_trainable(9, false))
  T.fails("MM_E_OUT_OF_RANGE", nil, m:trainable(9))
  local o = mm.optimizer(m, "sgd", {learning_rate = 0.05, epochs = 3, batch_size = 16})
  T.eq(o:set_layer_lr_scale(2, 0.5), o)
  T.eq(o:layer_lr_scale(2), 0.5)
  T.fails("MM_E_OUT_OF_RANGE", nil, o:set_layer_lr_scale(2, -1))
  assert(o:fit(ds2))
  same_tensor(m:weights(1), body_w, "frozen layer 1")
  local _, acc = m:evaluate(ds2)
  T.ok(acc > 0.9, "new head accuracy " .. acc)
  -- structure change: the optimizer needs a sync
  T.eq(m:truncate(2), m)
  m:add_dense(2, "identity")
  T.fails("MM_E_STATE", "sync", o:step(X[1], 0))
  T.eq(o:sync(), o)
  T.eq(o:layer_lr_scale(2), 0.5, "scale kept through sync")
  T.ok(o:step(X[1], 0) > 0, "steps after sync")
  T.fails("MM_E_OUT_OF_RANGE", nil, m:truncate(5))
  -- L2-SP: pull online updates back to the anchored (deployed) weights
  T.eq(o:set("l2sp", 0.1), o)
  T.fails("MM_E_STATE", "anchor", o:step(X[1], 0))
  T.eq(o:has_anchor(), false)
  T.eq(o:set_anchor(), o)
  T.eq(o:has_anchor(), true)
  T.ok(o:step(X[1], 0) > 0, "step with an anchor")
  T.eq(o:clear_anchor(), o)
  T.eq(o:has_anchor(), false)
  T.eq(o:set("l2sp", 0), o)
  -- numeric guard: a gradient norm cap refuses the step, changing nothing
  local before = m:weights(3)
  T.eq(o:set("max_grad_norm", 1e-9), o)
  T.fails("MM_E_NUMERIC", nil, o:step(X[1], 1))
  same_tensor(m:weights(3), before, "weights after a refused step")
end)

T.test("Fashion-MNIST: train, update online, save, load", function()
  local dir = T.fashion_dir()
  if not dir then print("  (skipped: Fashion-MNIST not installed)") return end
  local all = assert(mm.load_idx(dir .. "/train-images-idx3-ubyte.gz",
                                 dir .. "/train-labels-idx1-ubyte.gz"))
  local tr = assert(all:slice(1, 10000))
  all:close()
  local te = assert(mm.load_idx(dir .. "/t10k-images-idx3-ubyte.gz",
                                dir .. "/t10k-labels-idx1-ubyte.gz"))
  local test_part = assert(te:slice(1, 2000))
  local new_data = assert(te:slice(2001, 2000))
  local m <close> = mm.model("784-128-10:relu", 42)
  local o <close> = mm.optimizer(m, "adam", {learning_rate = 1e-3, batch_size = 64, epochs = 2})
  assert(o:fit(tr, test_part))
  local _, acc = m:evaluate(test_part)
  T.ok(acc > 0.78, "accuracy after 2 epochs on 10k images: " .. acc)
  local online <close> = mm.optimizer(m, "sgd", {learning_rate = 1e-3})
  local x, y = new_data:features(), new_data:labels()
  for i = 1, #new_data do assert(online:step(x:view(i), y[i])) end
  T.eq(online:steps(), 2000)
  local path = T.tmpname(".mmf")
  assert(m:save(path))
  local back <close> = assert(mm.load(path))
  os.remove(path)
  local _, acc2 = back:evaluate(test_part)
  local _, acc3 = m:evaluate(test_part)
  T.eq(acc2, acc3, "loaded model scores the same")
end)

T.run()
