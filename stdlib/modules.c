/* modules.c - the table of native modules; see modules.h. */
#include "modules.h"

const luaL_Reg runbook_modules[] = {
	{ "sh", luaopen_sh },
	{ "sys", luaopen_sys },
	{ "tcp", luaopen_tcp },
	{ "http", luaopen_http },
	{ "pg", luaopen_pg },
	{ "redis", luaopen_redis },
	{ NULL, NULL },
};
