-- No leaks: loops that create and free every kind of object (closed
-- explicitly, by <close>, or dropped for the garbage collector), including
-- failing calls and fit callbacks that raise, must leave the resident set
-- size and the Lua heap flat. Each iteration allocates about 0.5 MB of
-- library memory, so leaking one object per iteration would add hundreds
-- of MB; the bound allows allocator noise only.
local T = require "testlib"
local mm = require "mmaint"

local X, Y = T.blobs(64, 256, 4, 1)
local ds = mm.dataset(X, Y)
local xt = mm.tensor(X)

local function iteration(i)
  local m = mm.model("256-256-128-4:relu", i)           -- ~0.6 MB of parameters
  local o = mm.optimizer(m, i % 2 == 0 and "adam" or "sgd", {batch_size = 16})
  o:step(xt:view(1 + i % 64), Y[1 + i % 64])
  o:fit(ds, nil, function(p) return p.batch == 2 end)     -- cancelled
  pcall(o.fit, o, ds, nil, function() error("raised in the callback") end)
  local f = ds:features():view(1, 8)                       -- a view of the dataset
  m:forward(f)
  m:predict(X[1])
  m:weights(1)
  mm.load("/nonexistent/model.mmf")                        -- failing constructors
  mm.import_safetensors_buffer("\1\0\0\0\0\0\0\0{", {names = "a,b"})
  mm.import_onnx_buffer("\8\1\18\255garbage")
  mm.optimizer(m, "sgd", {learning_rate = -1})             -- fails after creating
  local p = mm.pruner("magnitude", {sparsity = 0.5})
  if i % 3 == 0 then
    p:attach(o)                                            -- optimizer keeps the pruner
    o:step(xt:view(2), Y[2])
  end
  local q = mm.quantizer("int8_dynamic")
  local c = m:clone()
  q:apply(c)
  local small = mm.model("256-32-4:relu", i)               -- maintainers copy it 6 times
  local mt = mm.maintainer(small, "sgd", {window = 8, holdout_every = 2, detector = "none",
                                          ring = 2, replay_size = 16, holdout_size = 16,
                                          recent_size = 16})
  local s = mm.server(small)
  mt:attach_server(s)                                      -- maintainer keeps the server
  mt:feed(xt:view(1, 16), mm.tensor(Y, "int32"):view(1, 16))
  mt:quarantined()
  mt:model()
  mm.maintainer(small, "sgd", {window = 0})                -- fails after creating
  local r = mm.reservoir(8, 256, i)
  r:offer(xt:view(1 + i % 64), Y[1 + i % 64])
  r:draw(4)
  if i % 2 == 0 then                                       -- closed explicitly ...
    m:close(); q:close(); c:close(); p:close(); o:close()   -- (model closed before its optimizer)
    s:close(); mt:close(); r:close(); small:close()        -- (server closed while attached)
  else
    local d <close> = mm.dataset(xt:view(1, 16), mm.tensor(Y, "int32"):view(1, 16))
    d:slice(2, 4)
  end                                                      -- ... or left to the GC
end

local function measure(n, first)
  for i = first, first + n - 1 do iteration(i) end
  collectgarbage(); collectgarbage()
  return T.rss_kb(), collectgarbage("count")
end

T.test("create/free loops keep RSS and the Lua heap flat", function()
  local rss0, heap0 = measure(100, 1)                    -- warm-up: allocator pools, caches
  local rss1, heap1 = measure(600, 101)
  print(string.format("  RSS %d kB -> %d kB, Lua heap %.0f kB -> %.0f kB", rss0, rss1, heap0,
                      heap1))
  if os.getenv("MM_LUA_SANITIZED") then
    print("  (AddressSanitizer build: RSS includes its quarantine; LeakSanitizer checks at exit)")
  else
    -- 3-12 MB of allocator growth seen; a leaked maintainer (~0.2 MB) or model
    -- per iteration would add 100+ MB; LeakSanitizer catches small leaks
    T.ok(rss1 - rss0 < 48 * 1024, "RSS grew by " .. (rss1 - rss0) .. " kB over 600 iterations")
  end
  T.ok(heap1 - heap0 < 256, "Lua heap grew by " .. (heap1 - heap0) .. " kB")
end)

T.run()
