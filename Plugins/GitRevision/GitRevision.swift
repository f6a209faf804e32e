import Foundation
import PackagePlugin

/// Writes `GeneratedRevision.swift` (`let gitRevision = "abc1234"`) for the target it is applied to:
/// the commit the package's checkout is at, read from `.git` directly by scripts/git-revision.sh
/// (tested by BatonServerTests/GitRevisionTests), or "unknown" when there is no `.git` (a tarball).
///
/// A build command whose inputs are the git files that change when HEAD moves: `HEAD` (a checkout
/// of another branch or commit) and `logs/HEAD` (appended by every commit, reset, checkout, merge
/// or pull in this checkout). The build system runs it again only when one of them changed, so an
/// unchanged checkout costs nothing and a commit recompiles only the BatonRevision module and its
/// importers. (A prebuild command would run on every build, but SwiftPM does not always re-invoke
/// plugins between builds, so its output went stale.) It runs `/bin/sh`, a tool not built from source.
@main
struct GitRevision: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let package = context.package.directoryURL
        let output = context.pluginWorkDirectoryURL.appending(path: "GeneratedRevision.swift")
        let gitDirectory = Self.gitDirectory(of: package)
        let inputs = gitDirectory.map { [$0.appending(path: "HEAD"), $0.appending(path: "logs/HEAD")] } ?? []
        return [.buildCommand(
            displayName: "Reading the git revision of \(context.package.displayName)",
            executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: [package.appending(path: "scripts/git-revision.sh").path, package.path,
                        context.pluginWorkDirectoryURL.path],
            inputFiles: inputs.filter { FileManager.default.fileExists(atPath: $0.path) },
            outputFiles: [output])]
    }

    /// `.git` itself, or the directory a `.git` file names (a worktree, a submodule); nil without one.
    static func gitDirectory(of package: URL) -> URL? {
        let dotGit = package.appending(path: ".git")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dotGit.path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue { return dotGit }
        guard let text = try? String(contentsOf: dotGit, encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("gitdir: ") }) else { return nil }
        let path = String(line.dropFirst("gitdir: ".count))
        return path.hasPrefix("/") ? URL(fileURLWithPath: path) : package.appending(path: path)
    }
}
