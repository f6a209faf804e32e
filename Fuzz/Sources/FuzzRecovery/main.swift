import BatonFuzzSupport
import CLibFuzzer
#if canImport(Glibc)
import Glibc
#endif

// `scripts/fuzz.sh recovery SECONDS`: libFuzzer calls back with each input.
// `FuzzRecovery --write-seeds DIR`: writes the seed corpus (real data directories as inputs) and exits.
if CommandLine.arguments.count == 3 && CommandLine.arguments[1] == "--write-seeds" {
    for seed in RecoveryFuzzer.seeds() {
        let path = CommandLine.arguments[2] + "/" + seed.name
        guard let file = fopen(path, "wb") else { fatalError("cannot write \(path)") }
        _ = seed.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        fclose(file)
    }
    exit(0)
}
var argumentCount = CommandLine.argc
var argumentValues: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argumentCount, &argumentValues) { data, size in
    RecoveryFuzzer.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
})
