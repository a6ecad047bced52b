# cmake -DIN=file -DOUT=file.c -P embed.cmake: writes server_openapi_json() returning IN's bytes.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* generated from src/server/openapi.json by embed.cmake */\n#include \"server/server.h\"\n\nstatic const char data[${len} + 1] = {\n${bytes}0};\n\nconst char *server_openapi_json(size_t *len)\n{\n    *len = ${len};\n    return data;\n}\n")
