-- Binding overhead of online learning from Lua vs the C API, same run.
--
--   lua5.4 benchmarks/bench_lua.lua [--seconds 10] [--reps 5] [--c build/benchmarks/bench_mmaint]
--   (LUA_CPATH must find mmaint.so and bench_lua_loop.so:
--    LUA_CPATH='build/bindings/lua/?.so;build/benchmarks/?.so;;' — the ;; keeps the
--    default path, where lua-system lives)
--
-- Model 784-256-128-10 relu (seed 42), SGD lr 0.01, one Fashion-MNIST sample
-- per mm_optimizer_step, the first 20000 training samples cycled, 1 thread:
-- exactly `bench_mmaint online`. Chunks of 500 steps of three loops run in
-- turn in this process for --seconds:
--   c      the C loop of bench_mmaint online (bench_lua_loop.so), called once
--          per chunk on the same tensors
--   lua    o:step(X:view(i), Y[i]) — a tensor view of the dataset, no copy
--   table  o:step(x_i, y_i) with x_i a Lua table of 784 numbers (converted
--          every call; 2000 rows cycled)
-- Each Lua chunk is paired with the C chunk timed just before it; the ratio
-- is Lua's time per step over C's, the median over all pairs. The target of
-- issue 6 is <= 1.5 for the tensor path. Cross-check (--reps > 0): the
-- separate `bench_mmaint online` process against the Lua loop timed right
-- after it, --reps times, medians (1 s each).
-- Wall clock: lua-system's monotonic clock (Debian lua-system).
local mm = require "mmaint"
local sys = require "system"
local cloop = require "bench_lua_loop"

local args = {reps = 5, seconds = 10.0, c = "build/benchmarks/bench_mmaint"}
do
  local i = 1
  while i <= #arg do
    local k, v = arg[i]:match("^%-%-(.+)$"), arg[i + 1]
    if not k or v == nil or args[k] == nil then
      io.stderr:write("usage: bench_lua.lua [--seconds S] [--reps N] [--c PATH]\n")
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

local function time(fn)
  local t0 = sys.monotime()
  fn()
  return sys.monotime() - t0
end

local function range(t)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(t) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return string.format("%.2f..%.2f", lo, hi)
end

-- ---- paired chunks in one process ----
for _, k in ipairs{"c", "lua", "table"} do loops[k]() end   -- warm-up: training caches
local t = {c = {}, lua = {}, table = {}}
local r_lua, r_table = {}, {}
local t_all = sys.monotime()
repeat
  local c = time(loops.c)
  local l = time(loops.lua)
  local tb = time(loops.table)
  t.c[#t.c + 1], t.lua[#t.lua + 1], t.table[#t.table + 1] = c, l, tb
  r_lua[#r_lua + 1], r_table[#r_table + 1] = l / c, tb / c
until #r_lua >= 5 and sys.monotime() - t_all >= args.seconds

local function us(times) return 1e6 * median(times) / CHUNK end
print(string.format('{"bench": "online_binding_paired", "pairs": %d, "c_us_per_step": %.3f, ' ..
  '"lua_us_per_step": %.3f, "lua_table_us_per_step": %.3f, "lua_ratio": %.4f, ' ..
  '"lua_table_ratio": %.4f, "backend": "%s", "version": "%s"}', #r_lua, us(t.c), us(t.lua),
  us(t.table), median(r_lua), median(r_table), mm.backend(), mm.version))

print(string.format("\nPaired 500-step chunks in one process, %d pairs over %.0f s (medians):",
                    #r_lua, sys.monotime() - t_all))
print("| loop | us/step | time per step vs C (median of paired ratios, range) |")
print("|---|---:|---|")
print(string.format("| C: mm_optimizer_step loop (bench_mmaint online's) | %.2f | 1 |", us(t.c)))
print(string.format("| Lua: o:step(X:view(i), Y[i]) (tensor view) | %.2f | **%.3fx** (%s) |",
                    us(t.lua), median(r_lua), range(r_lua)))
print(string.format("| Lua: o:step(row, y), row a table of 784 numbers | %.2f | %.3fx (%s) |",
                    us(t.table), median(r_table), range(r_table)))
print(string.format("target <= 1.5x for the tensor path: %s",
                    median(r_lua) <= 1.5 and "met" or "NOT met"))

-- ---- cross-check: the bench_mmaint process, then the Lua loop ----
if args.reps > 0 then
  local function lua_rate(seconds)
    local rates, t0 = {}, sys.monotime()
    repeat rates[#rates + 1] = CHUNK / time(loops.lua)
    until #rates >= 3 and sys.monotime() - t0 >= seconds
    return median(rates)
  end
  local rc, rl, ratios = {}, {}, {}
  for rep = 1, args.reps do
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
                      "%.3fx (%s)", args.reps, median(rc), median(rl), median(ratios),
                      range(ratios)))
end
