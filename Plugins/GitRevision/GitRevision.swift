import Foundation
import PackagePlugin

/// Writes `GeneratedRevision.swift` (`let gitRevision = "abc1234"`) for the target it is applied to:
/// the commit the package's checkout is at, read from `.git` directly (no `git` binary needed), or
/// "unknown" when there is no `.git` (a tarball). A prebuild command, so it runs on every build; it
/// rewrites the file only when the revision changed, so an unchanged checkout recompiles nothing.
/// Prebuild commands may only run tools that are not built from source: `/bin/sh` runs
/// scripts/git-revision.sh (tested by BatonServerTests/GitRevisionTests).
@main
struct GitRevision: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "Generated")
        return [.prebuildCommand(
            displayName: "Reading the git revision of \(context.package.displayName)",
            executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: [context.package.directoryURL.appending(path: "scripts/git-revision.sh").path,
                        context.package.directoryURL.path, output.path],
            outputFilesDirectory: output)]
    }
}
