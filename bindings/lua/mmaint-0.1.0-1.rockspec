-- LuaRocks build of the mmaint Lua module against an installed libmmaint
-- (meson install). From the repository root:
--   luarocks make bindings/lua/mmaint-0.1.0-1.rockspec [MMAINT_DIR=/usr/local]
-- The meson build (-Dlua=auto) builds and tests the same module.
rockspec_format = "3.0"
package = "mmaint"
version = "0.1.0-1"
source = {
   url = "git+file:///mmaint", -- built from a checkout with `luarocks make`
}
description = {
   summary = "Maintain deployed neural-network models: learn online, prune, quantize, migrate",
   detailed = [[
      Lua 5.4 binding of libmmaint: models, optimizers (online steps and
      batch fit with a Lua progress callback), datasets, pruners,
      quantizers, ONNX and safetensors migration. See doc/lua.md.
   ]],
   license = "MIT",
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
external_dependencies = {
   MMAINT = {
      header = "mm/mm.h",
      library = "mmaint",
   },
}
build = {
   type = "builtin",
   modules = {
      mmaint = {
         sources = {
            "bindings/lua/lmm_core.c", "bindings/lua/lmm_tensor.c",
            "bindings/lua/lmm_model.c", "bindings/lua/lmm_dataset.c",
            "bindings/lua/lmm_optimizer.c", "bindings/lua/lmm_pruner.c",
            "bindings/lua/lmm_quantizer.c", "bindings/lua/lmm_migrate.c",
            "bindings/lua/lmm_maintain.c",
         },
         defines = { "_POSIX_C_SOURCE=200809L" },
         libraries = { "mmaint" },
         incdirs = { "$(MMAINT_INCDIR)" },
         libdirs = { "$(MMAINT_LIBDIR)" },
      },
   },
}
