import BatonFuzzSupport
import CLibFuzzer
#if canImport(Glibc)
import Glibc
#endif

// `scripts/fuzz.sh engine SECONDS`: libFuzzer calls back with each input.
var argumentCount = CommandLine.argc
var argumentValues: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argumentCount, &argumentValues) { data, size in
    EngineFuzzer.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
})
