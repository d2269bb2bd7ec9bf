-- doc/lua.md's worked example runs as written (Fashion-MNIST: train, update
-- online, save, load), so the documentation cannot go stale.
local T = require "testlib"

T.test("doc/lua.md worked example", function()
  if not T.fashion_dir() then print("  (skipped: Fashion-MNIST not installed)") return end
  local root = assert(os.getenv("MM_SOURCE_ROOT"), "MM_SOURCE_ROOT")
  local f = assert(io.open(root .. "/doc/lua.md"))
  local text = f:read("a")
  f:close()
  local section = assert(text:match("\n## Worked example.-\n```lua\n(.-)\n```"), "example block")
  local out = {}
  local env = setmetatable({print = function(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    out[#out + 1] = table.concat(parts, "\t")
    print(...)
  end}, {__index = _G})
  assert(load(section, "=doc/lua.md example", "t", env))()
  local joined = table.concat(out, "\n")
  local acc = tonumber(joined:match("reloaded model: test accuracy ([%d.]+)"))
  T.ok(acc and acc > 0.85, "reloaded accuracy " .. tostring(acc))
  T.ok(joined:find("epoch 3:", 1, true), "three epochs reported")
  local back = io.open("model-v2.mmf", "rb")
  T.ok(back, "model-v2.mmf written")
  back:close()
  os.remove("model-v1.mmf"); os.remove("model-v2.mmf")
end)

T.run()
