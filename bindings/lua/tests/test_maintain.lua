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

T.run()
