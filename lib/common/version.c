#include "common/mm_internal.h"

unsigned mm_version_number(void) { return MM_VERSION_NUMBER; }
const char *mm_version_string(void) { return MM_VERSION_STRING; }
