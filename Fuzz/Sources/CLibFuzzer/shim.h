// libFuzzer's driver, linked in by -sanitize=fuzzer. SwiftPM gives an executable its own `main` (as
// <Target>_main), so the fuzz targets start libFuzzer from their top-level code through this entry.
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
