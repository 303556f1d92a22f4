# Turns lua/*.lua into a C file: one byte array per file, and a table of
# {module name, bytes, size} the `sky` module registers in package.preload.
# Invoked as: cmake -DOUT=file.c -DINPUTS="a.lua;b.lua" -P embed_lua.cmake
set(body "/* Generated from the lua/ folder by cmake/embed_lua.cmake. Do not edit. */\n#include <stddef.h>\n#include \"lua/embedded.h\"\n")
set(table "const sky_embedded_lua sky_embedded_lua_files[] = {\n")
separate_arguments(INPUTS)
set(i 0)
foreach(f ${INPUTS})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR n "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char lua_part_${i}[] = {${bytes}};\n")
  string(APPEND table "  { \"${name}\", lua_part_${i}, ${n} },\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND table "  { NULL, NULL, 0 }\n};\n")
file(WRITE ${OUT} "${body}${table}")
