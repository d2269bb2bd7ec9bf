-- The Lua binding: drift detectors and the hot-swap model server.
local T = require "testlib"
local mm = require "mmaint"

T.test("drift: DDM flags a jump of the error rate; settings; errors", function()
  local d = assert(mm.drift("ddm", {min_samples = 30}))
  T.eq(d:kind(), "ddm")
  T.eq(d:get("min_samples"), 30)
  local states = {}
  for i = 1, 300 do states[d:update(i % 10 == 0 and 1 or 0)] = true end   -- 10 % errors
  T.ok(not states.drift, "no drift while the error rate is stable")
  T.near(d:estimate(), 0.1, 0.01, "error rate estimate")
  local at
  for i = 1, 300 do
    if d:update(i % 10 < 6 and 1 or 0) == "drift" then at = i break end  -- 60 % errors
  end
  T.ok(at and at < 100, "drift detected after the jump, at " .. tostring(at))
  T.eq(d:count(), 1)
  T.eq(d:samples(), 0, "DDM resets itself on drift")
  T.fails("MM_E_INVALID_ARGUMENT", nil, d:update(0.5))        -- DDM takes 0/1 only
  T.fails("MM_E_INVALID_ARGUMENT", nil, d:update(0 / 0))
  T.fails("MM_E_INVALID_ARGUMENT", "lambda", d:set("lambda", 1))   -- not a DDM setting
  T.fails("MM_E_OUT_OF_RANGE", nil, d:set("drift_level", -1))
  T.eq(d:reset(), d)
  T.fails("MM_E_INVALID_ARGUMENT", "nope", mm.drift("nope"))
  T.fails("MM_E_OUT_OF_RANGE", nil, mm.drift("adwin", {delta = 2}))
end)

T.test("drift: Page-Hinkley on a rising loss, ADWIN on a mean shift", function()
  local ph = assert(mm.drift("page_hinkley", {lambda = 5}))
  local hit
  for i = 1, 400 do
    local loss = (i <= 200 and 0.2 or 0.8) + 0.05 * math.sin(i)
    if ph:update(loss) == "drift" then hit = i break end
  end
  T.ok(hit and hit > 200 and hit < 260, "Page-Hinkley drift at " .. tostring(hit))
  local ad = assert(mm.drift("adwin"))
  math.randomseed(5)
  local seen
  for i = 1, 3000 do
    local v = (i <= 1500 and 0.2 or 0.7) + 0.1 * (math.random() - 0.5)
    if ad:update(v) == "drift" then seen = i break end
  end
  T.ok(seen and seen > 1500, "ADWIN drift at " .. tostring(seen))
  T.ok(ad:samples() < seen, "ADWIN dropped the old part of its window")
end)

T.test("server: publish new versions, predict and forward from snapshots", function()
  local m = mm.model("4-8-3:relu", 1)
  local s = assert(mm.server(m))
  T.eq(s:version(), 1)
  local x = {{1, 2, 3, 4}, {0, 1, 0, 1}}
  local labels, v = s:predict(x)
  T.eq(v, 1)
  local want = m:predict(x)
  T.eq(labels[1], want[1]); T.eq(labels[2], want[2])
  local out, v2 = s:forward(mm.tensor(x))
  T.eq(v2, 1); T.eq(tostring(out), "mmaint.tensor float32 [2 x 3]")
  local logits = m:forward(mm.tensor(x))
  for i = 1, 6 do T.eq(out[i], logits[i], "served output " .. i) end
  -- the server served a clone: changing or closing the model changes nothing
  local m2 = mm.model("4-8-3:relu", 2)
  m:close()
  T.eq(s:publish(m2), 2)
  local l2, v3 = s:predict(x[1])
  T.eq(v3, 2); T.eq(l2[1], m2:predict(x[1])[1])
  T.eq(s:outstanding(), 0)
  T.eq(s:live_snapshots(), 1)
  T.fails("MM_E_SHAPE", nil, s:publish(mm.model("5-3", 1)))
  T.fails("MM_E_SHAPE", "not a multiple", s:predict({1, 2, 3}))
  T.eq(s:version(), 2, "a refused publish changes nothing")
  s:close()
  T.raises("mmaint.server is closed", s.version, s)
end)

-- Data for the maintainer: one draw of blobs (same centres throughout),
-- split into training, holdout and stream samples.
local X, Y = T.blobs(1800, 8, 3, 5)
local function rows(first, count, poison)
  local x, y = {}, {}
  for i = 1, count do
    x[i] = X[first + i - 1]
    y[i] = Y[first + i - 1]
    if poison then y[i] = (y[i] + 1) % 3 end   -- every label wrong: the worst poison
  end
  return x, y
end

local function trained_model()
  local m = mm.model("8-16-3:relu", 1)
  local tx, ty = rows(1, 600)
  assert(mm.optimizer(m, "adam", {learning_rate = 0.01, batch_size = 32, epochs = 4})
           :fit(mm.dataset(tx, ty)))
  local _, acc = m:evaluate(tx, ty)
  T.ok(acc > 0.9, "base model accuracy " .. acc)
  return m
end

-- A guarded maintainer: windows of 100, a trusted holdout, no stream
-- holdout, no detector (as the C tests' guarded()).
local function guarded(m)
  local mt = assert(mm.maintainer(m, "sgd", {window = 100, holdout_every = 0,
                                             detector = "none", guard_threshold = 0.02}))
  T.eq(mt:set_optimizer("learning_rate", 0.05), mt)
  local hx, hy = rows(601, 400)
  T.eq(mt:set_holdout(mm.tensor(hx), mm.tensor(hy, "int32")), mt)
  return mt
end

T.test("maintainer: a poisoned stretch is rolled back and quarantined", function()
  local m = trained_model()
  local mt = guarded(m)
  T.eq(mt:get("window"), 100)
  T.eq(mt:get("detector"), 0)
  local s0 = mt:status()
  T.eq(s0.samples, 0); T.eq(s0.version, 1); T.eq(s0.rollbacks, 0)
  T.eq(s0.rolling_accuracy, nil, "no progressive accuracy before the first sample")
  T.eq(s0.drift_state, "stable")
  T.eq(next(s0.events), nil, "no events")
  T.eq(s0.struct_size, nil)

  local cx, cy = rows(1001, 200)
  local r = assert(mt:feed(cx, cy))                       -- two clean windows
  T.eq(r.samples, 200); T.eq(r.version, 3); T.eq(r.learned, 200)
  T.ok(r.events.checkpoint and not r.events.rollback, "clean windows accepted")
  T.ok(r.rolling_accuracy > 0.85, "rolling accuracy " .. tostring(r.rolling_accuracy))
  T.ok(r.holdout_accuracy > 0.85, "holdout accuracy " .. tostring(r.holdout_accuracy))
  T.ok(r.correct > 170 and r.correct <= 200, "correct " .. r.correct)
  local good = mt:model()
  local hx, hy = rows(601, 400)

  local px, py = rows(1201, 200, true)                    -- two poisoned windows
  r = assert(mt:feed(mm.tensor(px), mm.tensor(py, "int32")))
  T.ok(r.events.rollback and not r.events.checkpoint, "poisoned windows rolled back")
  T.ok(r.rollbacks > 0, "rollbacks " .. r.rollbacks)
  T.eq(r.version, 3, "no poisoned version deployed")
  T.eq(r.new_ranges, r.rollbacks); T.eq(r.quarantined, 200); T.eq(r.learned, 200)
  local q = mt:quarantined()
  T.eq(#q, r.rollbacks)
  T.eq(q[1].start, 201, "1-based first poisoned sample"); T.eq(q[#q].stop, 400)
  for _, range in ipairs(q) do
    T.eq(range.reason, "metric")
    T.ok(range.accuracy < range.good_accuracy - 0.02,
         string.format("%g vs %g", range.accuracy, range.good_accuracy))
  end
  -- the deployed version is still the last good one
  local _, acc_good = good:evaluate(hx, hy)
  local _, acc_now = mt:model():evaluate(hx, hy)
  T.eq(acc_now, acc_good)

  cx, cy = rows(1401, 200)                                -- clean data is learned again
  r = assert(mt:feed(cx, cy))
  T.ok(r.events.checkpoint, "clean windows accepted after the poison")
  T.eq(r.version, 5); T.eq(r.new_ranges, 0); T.eq(r.samples, 600)
  -- a NaN feature: numeric trouble rolls back at once (not an argument error)
  local nx, ny = rows(1601, 50)
  nx[10] = {0, 0, 0 / 0, 0, 0, 0, 0, 0}
  r = assert(mt:feed(nx, ny))
  q = mt:quarantined()
  T.eq(q[#q].reason, "numeric"); T.eq(q[#q].start, 601); T.eq(q[#q].stop, 610)
  T.eq(q[#q].accuracy, nil, "NaN accuracies are nil"); T.eq(q[#q].good_accuracy, nil)
  r = assert(mt:flush())
  T.eq(r.samples, 650)
  T.ok(mt:num_checkpoints() >= 1 and mt:num_checkpoints() <= mt:get("ring"))
  T.eq(mt:status().version, r.version)
  T.ok(tostring(mt):find("mmaint.maintainer: version", 1, true), tostring(mt))
  mt:close()
  T.eq(tostring(mt), "mmaint.maintainer (closed)")
  T.raises("mmaint.maintainer is closed", mt.status, mt)
end)

T.test("maintainer: model() is an independent clone; single samples; datasets", function()
  local m = trained_model()
  local mt = guarded(m)
  local d = mt:model()
  T.eq(getmetatable(d).__name, "mmaint.model")
  T.eq(d:input_dim(), 8); T.eq(d:output_dim(), 3)
  local hx, hy = rows(601, 400)
  T.eq(d:predict(hx[1])[1], m:predict(hx[1])[1])
  local _, a1 = d:evaluate(hx, hy)
  local _, a0 = m:evaluate(hx, hy)
  T.eq(a1, a0, "version 1 is the model given")
  -- it outlives later feeds and the maintainer itself, and can be trained
  local cx, cy = rows(1001, 300)
  for i = 1, 3 do assert(mt:feed(cx[i], cy[i])) end       -- one sample: a row and an integer
  assert(mt:feed(mm.dataset(cx, cy)))                     -- or a labelled dataset
  T.eq(mt:status().samples, 303)
  local w = mt:working_model()
  T.eq(w:num_layers(), 2)
  mt:close()
  collectgarbage()
  T.eq(d:predict(hx[1])[1], m:predict(hx[1])[1])
  local o = mm.optimizer(d, "sgd", {learning_rate = 0.05})
  assert(o:step(hx[1], hy[1]))
  d:close(); w:close()
  T.fails("MM_E_INVALID_ARGUMENT", nil, mm.maintainer(mm.model(4), "sgd"))  -- no layers
end)

T.test("maintainer: attached server gets accepted versions, kept alive", function()
  local m = trained_model()
  local s = assert(mm.server(m))
  local mt = guarded(m)
  T.eq(mt:attach_server(s), mt)
  T.eq(s:version(), 2, "the deployed version is published at once")
  local x, y = rows(1001, 300)
  for i = 201, 300 do y[i] = (y[i] + 1) % 3 end           -- last window poisoned
  local r = assert(mt:feed(x, y))
  T.eq(r.version, 3); T.eq(r.rollbacks, 1)
  T.eq(s:version(), 4, "initial + attach + 2 accepted versions")
  local served, v = s:predict(x)
  T.eq(v, 4)
  local want = mt:model():predict(x)
  for i = 1, #x do T.eq(served[i], want[i], "served prediction " .. i) end
  -- the maintainer keeps its server: dropping every other reference, or
  -- closing it, does not free the C server under the maintainer
  s = nil
  collectgarbage(); collectgarbage()
  assert(mt:feed(rows(1301, 100)))
  local s2 = assert(mm.server(m))
  mt:attach_server(s2)
  s2:close()                                              -- closed while attached
  x, y = rows(1401, 100)
  r = assert(mt:feed(x, y))
  T.ok(r.events.checkpoint, "published to the closed (still alive) server")
  T.eq(mt:attach_server(nil), mt)                         -- detach: s2 is freed now
  collectgarbage()
  r = assert(mt:feed(rows(1501, 100)))
  T.ok(r.events.checkpoint)
  T.raises("mmaint.server is closed", mt.attach_server, mt, s2)
  -- closing the server before the maintainer, then collecting both
  local s3 = assert(mm.server(m))
  mt:attach_server(s3)
  s3:close(); s3 = nil
  mt:close()
  mt = nil
  collectgarbage(); collectgarbage()
end)

T.test("maintainer: bad arguments", function()
  local m = mm.model("8-16-3:relu", 1)
  T.fails("MM_E_INVALID_ARGUMENT", nil, mm.maintainer(m, "nope"))
  T.raises("mmaint.model expected", mm.maintainer, {}, "sgd")
  T.raises("bad argument #2", mm.maintainer, m)
  T.raises("table expected", mm.maintainer, m, "sgd", 5)
  T.fails("MM_E_OUT_OF_RANGE", "window", mm.maintainer(m, "sgd", {window = 0}))
  local mse = m:clone()
  mse:set_loss("mse")
  T.fails("MM_E_UNSUPPORTED", nil, mm.maintainer(mse, "sgd"))
  local mt = assert(mm.maintainer(m, "adam"))
  T.fails("MM_E_INVALID_ARGUMENT", "windowz", mt:set("windowz", 3))
  T.fails("MM_E_INVALID_ARGUMENT", "windowz", mt:get("windowz"))
  T.fails("MM_E_OUT_OF_RANGE", nil, mt:set("guard_threshold", -0.1))
  T.fails("MM_E_INVALID_ARGUMENT", nil, mt:set("batch", 1.5))
  T.fails("MM_E_INVALID_ARGUMENT", "kswin", mt:set("detector", "kswin"))
  T.eq(mt:set{detector = "ddm", seed = 3}, mt)
  T.eq(mt:get("detector"), 3); T.eq(mt:get("seed"), 3)
  T.eq(mt:set("detector", "adwin"), mt)
  T.eq(mt:set_detector("delta", 0.01), mt)
  T.eq(mt:set_detector{delta = 0.02}, mt)
  T.fails("MM_E_INVALID_ARGUMENT", nil, mt:set_detector("nonsense", 1))
  T.fails("MM_E_UNSUPPORTED", nil, mt:set_optimizer("momentum", 0.9))  -- not an Adam setting
  T.fails("MM_E_OUT_OF_RANGE", nil, mt:set_optimizer("learning_rate", -1))
  T.fails("MM_E_INVALID_ARGUMENT", nil, mt:set_optimizer("lrate", 1))
  T.eq(mt:set_optimizer{learning_rate = 0.01, beta1 = 0.8}, mt)
  T.raises("number expected", mt.set, mt, "window", "ten")
  T.raises("number expected", mt.set_optimizer, mt, "learning_rate", {})
  -- samples
  local x, y = rows(1001, 4)
  T.fails("MM_E_SHAPE", "not a multiple", mt:feed({1, 2, 3}, 0))
  T.fails("MM_E_SHAPE", "3 labels for 4 samples", mt:feed(x, {y[1], y[2], y[3]}))
  T.fails("MM_E_OUT_OF_RANGE", "sample", mt:feed(x, {0, 1, 2, 3}))     -- label 3 of 3 classes
  T.raises("bad argument #3", mt.feed, mt, x)                          -- labels missing
  T.raises("not a 32-bit integer", mt.feed, mt, x, {0, 1, 2, 0.5})
  T.raises("bad argument #2", mt.feed, mt, mm.dataset(x))              -- unlabelled dataset
  T.raises("bad argument #4", mt.feed, mt, x, y, {})
  T.raises("table or mmaint.tensor", mt.feed, mt, "x", y)
  T.fails("MM_E_OUT_OF_RANGE", nil, mt:set_holdout(x, {0, 1, -1, 0}))
  T.eq(mt:status().samples, 0, "refused feeds change nothing")
  T.fails("MM_E_IO", nil, mt:set_checkpoint_dir("/nonexistent/mmaint-dir"))
  T.eq(mt:set_checkpoint_dir(nil), mt)
  T.raises("mmaint.server expected", mt.attach_server, mt, m)
  assert(mt:feed(x, y))
  T.fails("MM_E_STATE", nil, mt:set("window", 7))                     -- sizes are fixed once fed
  T.eq(mt:set("guard_threshold", 0.05), mt)
  T.eq(#mt:quarantined(), 0)
  mt:close()
  mt:close()                                                           -- idempotent
  T.ok(mt:is_closed())
  T.raises("mmaint.maintainer is closed", mt.feed, mt, x, y)
end)

T.test("maintainer: checkpoint files", function()
  local m = trained_model()
  local mt = guarded(m)
  local dir = T.tmpname("-ckpt")
  T.ok(os.execute("mkdir -p '" .. dir .. "'"))
  T.eq(mt:set_checkpoint_dir(dir), mt)
  assert(mt:feed(rows(1001, 200)))
  local back = assert(mm.load(dir .. "/ckpt-00000003.mmf"))
  local hx = rows(601, 50)
  local a, b = back:predict(hx), mt:model():predict(hx)
  for i = 1, #hx do T.eq(a[i], b[i]) end
  mt:close()
  os.execute("rm -rf '" .. dir .. "'")
end)

T.test("reservoir: offer, size, seen, get, draw; errors", function()
  local r = assert(mm.reservoir(5, 3, 7))
  T.eq(r:size(), 0); T.eq(#r, 0); T.eq(r:seen(), 0); T.eq(r:dim(), 3); T.eq(r:capacity(), 5)
  local held = {}
  for i = 1, 5 do                                         -- the first 5 fill slots 1..5
    T.eq(r:offer({i, i + 0.5, -i}, i * 10), i)
    held[i] = {i, i + 0.5, -i, label = i * 10}
  end
  local kept = 0
  for i = 6, 200 do
    local slot = r:offer(mm.tensor({i, i + 0.5, -i}), i * 10)
    T.ok(slot == false or (slot >= 1 and slot <= 5), "slot " .. tostring(slot))
    if slot then
      kept = kept + 1
      held[slot] = {i, i + 0.5, -i, label = i * 10}
      local x, label = r:get(slot)
      T.eq(label, i * 10)
      for j = 1, 3 do T.eq(x[j], held[slot][j]) end
    end
  end
  T.ok(kept > 0 and kept < 195, "kept " .. kept)
  T.eq(#r, 5); T.eq(r:seen(), 200)
  local x1 = r:get(1)
  T.eq(tostring(x1), "mmaint.tensor float32 [3]")
  x1[1] = 1e6                                             -- a copy
  T.eq(r:get(1)[1], held[1][1])
  local by_label = {}
  for _, h in pairs(held) do by_label[h.label] = h end
  local x, labels = r:draw(40)
  T.eq(tostring(x), "mmaint.tensor float32 [40 x 3]")
  T.eq(tostring(labels), "mmaint.tensor int32 [40]")
  for k = 1, 40 do
    local h = by_label[labels[k]]
    T.ok(h, "drawn label " .. labels[k] .. " is held")
    for j = 1, 3 do T.eq(x[(k - 1) * 3 + j], h[j]) end
  end
  T.eq(#select(2, r:draw(0)), 0)
  T.ok(tostring(r):find("5/5 samples of 3, 200 seen", 1, true), tostring(r))
  -- the same seed gives the same sample
  local a, b = mm.reservoir(4, 1, 9), mm.reservoir(4, 1, 9)
  for i = 1, 100 do T.eq(a:offer({i}, i), b:offer({i}, i)) end
  -- errors
  T.fails("MM_E_OUT_OF_RANGE", nil, r:get(6))
  T.raises("bad argument #2", r.get, r, 0)
  T.fails("MM_E_SHAPE", "holds samples of 3", r:offer({1, 2}, 0))
  T.raises("number expected", r.offer, r, {1, 2, 3})
  T.raises("not a 32-bit integer", r.offer, r, {1, 2, 3}, 1 << 40)
  T.eq(r:seen(), 200, "refused offers are not counted")
  T.raises("bad argument #2", r.draw, r, -1)
  T.fails("MM_E_STATE", "empty", mm.reservoir(2, 2):draw(1))
  T.fails("MM_E_INVALID_ARGUMENT", nil, mm.reservoir(0, 3))
  T.fails("MM_E_INVALID_ARGUMENT", nil, mm.reservoir(3, 0))
  T.fails("MM_E_OUT_OF_RANGE", nil, mm.reservoir(1 << 62, 4))
  T.raises("bad argument #1", mm.reservoir, -1, 3)
  T.raises("seed must be >= 0", mm.reservoir, 1, 1, -1)
  r:close()
  T.eq(tostring(r), "mmaint.reservoir (closed)")
  T.raises("mmaint.reservoir is closed", r.offer, r, {1, 2, 3}, 0)
  do local r2 <close> = mm.reservoir(1, 1) end
end)

T.run()
