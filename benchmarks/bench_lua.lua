-- Binding overhead of online learning from Lua vs the C API, same run.
--
--   lua5.4 benchmarks/bench_lua.lua [--reps 7] [--seconds 1] [--c build/benchmarks/bench_mmaint]
--   (LUA_CPATH must find mmaint.so: LUA_CPATH='build/bindings/lua/?.so;;', the ;; keeps
--   the default path, where lua-system lives)
--
-- Model 784-256-128-10 relu (seed 42), SGD lr 0.01, one Fashion-MNIST sample
-- per mm_optimizer_step, the first 20000 training samples cycled, 1 thread:
-- exactly `bench_mmaint online`. Each repetition runs, back to back,
--   c      bench_mmaint online (a separate process; its median chunk rate)
--   lua    o:step(X:view(i), Y[i]) — a tensor view of the dataset, no copy
--   table  o:step(x_i, y_i) with x_i a Lua table of 784 numbers (converted
--          every call; 2000 rows cycled)
-- each timing chunks of 500 steps for --seconds and reporting the median
-- chunk. The ratio is Lua's time per step over C's (median of the per-
-- repetition ratios); the target of issue 6 is <= 1.5 for the tensor path.
-- Wall clock: lua-system's monotonic clock (Debian lua-system).
local mm = require "mmaint"
local sys = require "system"

local args = {reps = 7, seconds = 1.0, c = "build/benchmarks/bench_mmaint"}
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
    if not k or v == nil or args[k] == nil then
      io.stderr:write("usage: bench_lua.lua [--reps N] [--seconds S] [--c PATH]\n")
      os.exit(2)
    end
    args[k] = type(args[k]) == "number" and assert(tonumber(v), k) or v
    i = i + 2
  end
end

local dir = os.getenv("MM_FASHION_DIR") or "/usr/share/datasets/fashion-mnist"
assert(mm.set_num_threads(1))
local train = assert(mm.load_idx(dir .. "/train-images-idx3-ubyte.gz",
                                 dir .. "/train-labels-idx1-ubyte.gz"))
local X, Y = train:features(), train:labels()
local NB, CHUNK = 20000, 500

local rows = {}                           -- the table path: 2000 rows as Lua tables
for i = 1, 2000 do
  local r = {}
  local v = X:view(i)
  for j = 1, 784 do r[j] = v[j] end
  rows[i] = r
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  return s[#s // 2 + 1]
end

-- Median samples/s of 500-step chunks run for about `seconds` (>= 3 chunks).
local function timed(step_chunk)
  step_chunk()                             -- warm-up: training caches
  local rates, t_all = {}, sys.monotime()
  repeat
    local t0 = sys.monotime()
    local n = step_chunk()
    rates[#rates + 1] = n / (sys.monotime() - t0)
  until #rates >= 3 and sys.monotime() - t_all >= args.seconds
  return median(rates)
end

local function online(kind)
  local m <close> = assert(mm.model("784-256-128-10:relu", 42))
  local o <close> = assert(mm.optimizer(m, "sgd", {learning_rate = 0.01}))
  local pos = 0
  local step = o.step
  if kind == "lua" then
    return timed(function()
      for _ = 1, CHUNK do
        local i = pos % NB + 1
        pos = pos + 1
        step(o, X:view(i), Y[i])
      end
      return CHUNK
    end)
  end
  return timed(function()
    for _ = 1, CHUNK do
      local i = pos % 2000 + 1
      pos = pos + 1
      step(o, rows[i], Y[i])
    end
    return CHUNK
  end)
end

local function c_online()
  local cmd = string.format("%s online --seconds %g", args.c, args.seconds)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  local rate = tonumber(out:match('"samples_per_s":%s*([%d.]+)'))
  if not rate then error("no result from: " .. cmd .. "\n" .. out) end
  return rate
end

local res = {c = {}, lua = {}, table = {}, r_lua = {}, r_table = {}}
for rep = 1, args.reps do
  local c, l, t = c_online(), online("lua"), online("table")
  res.c[rep], res.lua[rep], res.table[rep] = c, l, t
  res.r_lua[rep], res.r_table[rep] = c / l, c / t
  print(string.format(
    '{"bench": "online_binding", "rep": %d, "c_samples_per_s": %.1f, ' ..
    '"lua_samples_per_s": %.1f, "lua_table_samples_per_s": %.1f, "backend": "%s", ' ..
    '"version": "%s"}', rep, c, l, t, mm.backend(), mm.version))
  io.stdout:flush()
end

local function range(t)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return string.format("%.2f..%.2f", lo, hi)
end

local c, l, t = median(res.c), median(res.lua), median(res.table)
print(string.format("\n%d repetitions x %g s, medians:", args.reps, args.seconds))
print(string.format("| path | samples/s | us/step | time per step vs C (median of per-rep ratios) |"))
print("|---|---:|---:|---|")
print(string.format("| C mm_optimizer_step (bench_mmaint online) | %.0f | %.2f | 1 |", c, 1e6 / c))
print(string.format("| Lua o:step(X:view(i), Y[i]) (tensor view) | %.0f | %.2f | **%.3fx** (%s) |",
                    l, 1e6 / l, median(res.r_lua), range(res.r_lua)))
print(string.format("| Lua o:step(row, y), row a table of 784 numbers | %.0f | %.2f | %.3fx (%s) |",
                    t, 1e6 / t, median(res.r_table), range(res.r_table)))
print(string.format("target <= 1.5x for the tensor path: %s",
                    median(res.r_lua) <= 1.5 and "met" or "NOT met"))
