-- A tiny test runner for the Lua binding tests (plain Lua 5.4: Debian's
-- busted runs only under Lua 5.1). Each test is a function; a failing
-- assertion or error fails that test with a traceback; the process exits
-- non-zero when any test failed, so meson test reports it.
local T = {}
local tests = {}

function T.test(name, fn) tests[#tests + 1] = {name = name, fn = fn} end

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function T.eq(got, want, what)
  if got ~= want then
    error(string.format("%s: got %s, want %s", what or "value", fmt(got), fmt(want)), 2)
  end
end

function T.near(got, want, tol, what)
  if type(got) ~= "number" or math.abs(got - want) > (tol or 1e-6) then
    error(string.format("%s: got %s, want %s +- %s", what or "value", fmt(got), fmt(want),
                        tostring(tol or 1e-6)), 2)
  end
end

function T.ok(cond, what)
  if not cond then error(what or "assertion failed", 2) end
  return cond
end

-- Assert that a call returned the Lua error convention nil, message, code
-- with the given code, and a message containing `pattern` (plain text).
function T.fails(code, pattern, ...)
  local n = select("#", ...)
  local v, msg, got = ...
  if v ~= nil or n ~= 3 then
    error(string.format("expected nil, message, %s; got %s values: %s, %s, %s", code, n,
                        fmt(v), fmt(msg), fmt(got)), 2)
  end
  if got ~= code then
    error(string.format("expected code %s, got %s (%s)", code, fmt(got), fmt(msg)), 2)
  end
  if type(msg) ~= "string" or msg == "" then error("empty error message", 2) end
  if pattern and not msg:find(pattern, 1, true) then
    error(string.format("message %q does not contain %q", msg, pattern), 2)
  end
  return msg
end

-- Assert that fn(...) raises an error whose text contains `pattern`.
function T.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error containing " .. fmt(pattern), 2) end
  local s = tostring(err)
  if pattern and not s:find(pattern, 1, true) then
    error(string.format("error %q does not contain %q", s, pattern), 2)
  end
  return err
end

function T.tmpname(suffix)
  local dir = os.getenv("MM_LUA_TMP") or os.getenv("TMPDIR") or "/tmp"
  T._n = (T._n or 0) + 1
  return string.format("%s/mmaint-lua-%d-%d%s", dir, math.random(1 << 30), T._n, suffix or "")
end

-- Synthetic classification data: `classes` Gaussian blobs in `dim`
-- dimensions, n samples, deterministic for a seed. Returns x (table of rows)
-- and labels (0-based classes).
function T.blobs(n, dim, classes, seed)
  math.randomseed(seed or 1)
  local centers = {}
  for c = 1, classes do
    centers[c] = {}
    for j = 1, dim do centers[c][j] = (math.random() - 0.5) * 6 end
  end
  local x, y = {}, {}
  for i = 1, n do
    local c = (i - 1) % classes
    local row = {}
    for j = 1, dim do
      -- Box-Muller normal noise around the class centre
      local u1, u2 = math.random(), math.random()
      row[j] = centers[c + 1][j] + math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
    end
    x[i], y[i] = row, c
  end
  return x, y
end

-- Fashion-MNIST directory, or nil when the data is not installed.
function T.fashion_dir()
  local d = os.getenv("MM_FASHION_DIR") or "/usr/share/datasets/fashion-mnist"
  local f = io.open(d .. "/train-images-idx3-ubyte.gz", "rb")
  if not f then return nil end
  f:close()
  return d
end

-- Resident set size of this process in kB (Linux), or nil.
function T.rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  for line in f:lines() do
    local kb = line:match("^VmRSS:%s*(%d+)")
    if kb then f:close() return tonumber(kb) end
  end
  f:close()
end

function T.run()
  local failed = 0
  local only = os.getenv("MM_LUA_TEST")
  for _, t in ipairs(tests) do
    if not only or t.name:find(only, 1, true) then
      local t0 = os.clock()
      local ok, err = xpcall(t.fn, debug.traceback)
      collectgarbage()
      if ok then
        print(string.format("ok   %-50s %.2fs", t.name, os.clock() - t0))
      else
        failed = failed + 1
        print(string.format("FAIL %s\n%s", t.name, tostring(err)))
      end
    end
  end
  print(string.format("%d tests, %d failed", #tests, failed))
  os.exit(failed == 0 and 0 or 1, true)
end

return T
