-- Binding overhead of online learning from Lua vs the C API, same run.
--
--   lua5.4 benchmarks/bench_lua.lua [--reps 9] [--seconds 3] [--checks 5]
--                                   [--c build/benchmarks/bench_mmaint]
--   (LUA_CPATH must find mmaint.so and bench_lua_loop.so:
--    LUA_CPATH='build/bindings/lua/?.so;build/benchmarks/?.so;;' — the ;; keeps the
--    default path, where lua-system lives)
--
-- Model 784-256-128-10 relu (seed 42), SGD lr 0.01, one Fashion-MNIST sample
-- per mm_optimizer_step, the first 20000 training samples cycled, 1 thread:
-- exactly `bench_mmaint online`. Chunks of 500 steps of three loops run in
-- turn in this process:
--   c      the C loop of bench_mmaint online (bench_lua_loop.so), called once
--          per chunk on the same tensors
--   lua    o:step(X:view(i), Y[i]) — a tensor view of the dataset, no copy
--   table  o:step(x_i, y_i) with x_i a Lua table of 784 numbers (converted
--          every call; 2000 rows cycled)
-- Each Lua chunk is paired with the C chunk timed just before it, in wall
-- time and in CPU time (os.clock: on a loaded machine a step's wall time is
-- mostly waiting for a core, so CPU time measures what the step costs).
-- Each repetition (--seconds) reports its median ratios; the summary is the
-- median (min..max) over --reps repetitions. Target of issue 6: Lua's time
-- per step <= 1.5x C's for the tensor path. Cross-check (--checks N): the
-- separate `bench_mmaint online` process, then the Lua loop timed right
-- after it (1 s each), N times, medians of wall-clock rates.
-- Wall clock: lua-system's monotonic clock (Debian lua-system).
local mm = require "mmaint"
local sys = require "system"
local cloop = require "bench_lua_loop"

local args = {reps = 9, seconds = 3.0, checks = 5, c = "build/benchmarks/bench_mmaint"}
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
    if not k or v == nil or args[k] == nil then
      io.stderr:write("usage: bench_lua.lua [--reps N] [--seconds S] [--checks N] [--c PATH]\n")
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

local function new_optimizer()
  local m = assert(mm.model("784-256-128-10:relu", 42))
  return assert(mm.optimizer(m, "sgd", {learning_rate = 0.01}))
end

-- The three loops; each runs CHUNK steps from its own position.
local loops = {}
do
  local o, pos = new_optimizer(), 0
  loops.c = function()
    cloop.chunk(o, X, Y, pos % NB + 1, CHUNK)
    pos = pos + CHUNK
  end
end
do
  local o, pos = new_optimizer(), 0
  local step = o.step
  loops.lua = function()
    for _ = 1, CHUNK do
      local i = pos % NB + 1
      pos = pos + 1
      step(o, X:view(i), Y[i])
    end
  end
end
do
  local o, pos = new_optimizer(), 0
  local step = o.step
  loops.table = function()
    for _ = 1, CHUNK do
      local i = pos % 2000 + 1
      pos = pos + 1
      step(o, rows[i], Y[i])
    end
  end
end

-- Wall and CPU seconds of fn() (os.clock is the process's CPU time; the
-- process runs one thread).
local function time(fn)
  local t0, c0 = sys.monotime(), os.clock()
  fn()
  return sys.monotime() - t0, os.clock() - c0
end

local function range(t)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return string.format("%.2f..%.2f", lo, hi)
end

-- ---- paired chunks in one process ----
for _, k in ipairs{"c", "lua", "table"} do loops[k]() end   -- warm-up: training caches
local keys = {"c", "lua", "table"}
local rep_med = {}       -- rep_med[name][rep]: per-repetition medians
for _, n in ipairs{"wall_lua", "wall_table", "cpu_lua", "cpu_table", "us_c", "us_lua",
                   "us_table", "cus_c", "cus_lua", "cus_table"} do rep_med[n] = {} end
local pairs_total = 0
for rep = 1, args.reps do
  local w, c = {c = {}, lua = {}, table = {}}, {c = {}, lua = {}, table = {}}
  local r = {wall_lua = {}, wall_table = {}, cpu_lua = {}, cpu_table = {}}
  local t_rep = sys.monotime()
  repeat
    for _, k in ipairs(keys) do
      local tw, tc = time(loops[k])
      w[k][#w[k] + 1], c[k][#c[k] + 1] = tw, tc
    end
    local n = #w.c
    r.wall_lua[n], r.wall_table[n] = w.lua[n] / w.c[n], w.table[n] / w.c[n]
    r.cpu_lua[n], r.cpu_table[n] = c.lua[n] / c.c[n], c.table[n] / c.c[n]
  until n >= 5 and sys.monotime() - t_rep >= args.seconds
  pairs_total = pairs_total + #w.c
  for name, v in pairs(r) do rep_med[name][rep] = median(v) end
  for _, k in ipairs(keys) do
    rep_med["us_" .. k][rep] = 1e6 * median(w[k]) / CHUNK
    rep_med["cus_" .. k][rep] = 1e6 * median(c[k]) / CHUNK
  end
  print(string.format('{"bench": "online_binding_paired", "rep": %d, "pairs": %d, ' ..
    '"cpu_us_per_step": {"c": %.3f, "lua": %.3f, "lua_table": %.3f}, ' ..
    '"wall_us_per_step": {"c": %.3f, "lua": %.3f, "lua_table": %.3f}, ' ..
    '"cpu_ratio": {"lua": %.4f, "lua_table": %.4f}, "wall_ratio": {"lua": %.4f, ' ..
    '"lua_table": %.4f}, "backend": "%s", "version": "%s"}', rep, #w.c,
    rep_med.cus_c[rep], rep_med.cus_lua[rep], rep_med.cus_table[rep], rep_med.us_c[rep],
    rep_med.us_lua[rep], rep_med.us_table[rep], rep_med.cpu_lua[rep], rep_med.cpu_table[rep],
    rep_med.wall_lua[rep], rep_med.wall_table[rep], mm.backend(), mm.version))
  io.stdout:flush()
end

local M = function(name) return median(rep_med[name]) end
print(string.format("\nPaired 500-step chunks in one process: %d repetitions x %g s, %d pairs; " ..
                    "median (min..max) of the per-repetition medians", args.reps, args.seconds,
                    pairs_total))
print("| Lua loop | **Lua / C, paired, CPU time** | CPU us/step C / Lua | " ..
      "Lua / C, paired, wall time | wall us/step C / Lua |")
print("|---|---|---|---|---|")
print(string.format("| `o:step(X:view(i), Y[i])` (tensor view) | **%.3fx** (%s) | %.1f / %.1f | " ..
                    "%.3fx (%s) | %.1f / %.1f |", M("cpu_lua"), range(rep_med.cpu_lua),
                    M("cus_c"), M("cus_lua"), M("wall_lua"), range(rep_med.wall_lua), M("us_c"),
                    M("us_lua")))
print(string.format("| `o:step(row, y)`, row a table of 784 numbers | %.3fx (%s) | %.1f / %.1f | " ..
                    "%.3fx (%s) | %.1f / %.1f |", M("cpu_table"), range(rep_med.cpu_table),
                    M("cus_c"), M("cus_table"), M("wall_table"), range(rep_med.wall_table),
                    M("us_c"), M("us_table")))
print(string.format("target <= 1.5x C's time per step for the tensor path: %s",
                    M("cpu_lua") <= 1.5 and M("wall_lua") <= 1.5 and "met" or "NOT met"))

-- ---- cross-check: the bench_mmaint process, then the Lua loop ----
if args.checks > 0 then
  local function lua_rate(seconds)
    local rates, t0 = {}, sys.monotime()
    repeat rates[#rates + 1] = CHUNK / (time(loops.lua))
    until #rates >= 3 and sys.monotime() - t0 >= seconds
    return median(rates)
  end
  local rc, rl, ratios = {}, {}, {}
  for rep = 1, args.checks do
    local cmd = string.format("%s online --seconds 1", args.c)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    p:close()
    local c = tonumber(out:match('"samples_per_s":%s*([%d.]+)'))
    if not c then error("no result from: " .. cmd .. "\n" .. out) end
    local l = lua_rate(1)
    rc[rep], rl[rep], ratios[rep] = c, l, c / l
  end
  print(string.format("\nCross-check, %d x (bench_mmaint online process, then the Lua loop), " ..
                      "medians: C %.0f samples/s, Lua %.0f samples/s, Lua/C time per step " ..
                      "%.3fx (%s)", args.checks, median(rc), median(rl), median(ratios),
                      range(ratios)))
end
