import BatonProtocol
import XCTest

final class EndpointTests: XCTestCase {
    func testDefaultSocketPathPrefersBatonSocketThenRuntimeDirectoryThenTmp() {
        XCTAssertEqual(Endpoint.defaultSocketPath(environment: ["BATON_SOCKET": "/run/b.sock",
                                                                "XDG_RUNTIME_DIR": "/run/user/7"], userID: 7),
                       "/run/b.sock")
        XCTAssertEqual(Endpoint.defaultSocketPath(environment: ["XDG_RUNTIME_DIR": "/run/user/7"], userID: 7),
                       "/run/user/7/baton.sock")
        XCTAssertEqual(Endpoint.defaultSocketPath(environment: [:], userID: 1000), "/tmp/baton-1000.sock")
        // Empty variables count as unset.
        XCTAssertEqual(Endpoint.defaultSocketPath(environment: ["BATON_SOCKET": "", "XDG_RUNTIME_DIR": ""], userID: 0),
                       "/tmp/baton-0.sock")
        XCTAssertEqual(Endpoint.defaultSocketPath(environment: ["BATON_SOCKET": "", "XDG_RUNTIME_DIR": "/r"], userID: 0),
                       "/r/baton.sock")
    }

    func testParseTCP() {
        XCTAssertEqual(Endpoint.parseTCP("127.0.0.1:7000"), .tcp(host: "127.0.0.1", port: 7000))
        XCTAssertEqual(Endpoint.parseTCP("localhost:65535"), .tcp(host: "localhost", port: 65_535))
        XCTAssertEqual(Endpoint.parseTCP("[::1]:7000"), .tcp(host: "::1", port: 7000))
        XCTAssertEqual(Endpoint.parseTCP("host:1"), .tcp(host: "host", port: 1))
        for bad in ["", "localhost", "localhost:", ":7000", "[]:7000", "host:0", "host:65536", "host:-1", "host:port",
                    "host:70 ", "[::1]"] {
            XCTAssertNil(Endpoint.parseTCP(bad), bad)
        }
    }

    func testDescriptionParsesBack() {
        for endpoint in [Endpoint.tcp(host: "127.0.0.1", port: 1), .tcp(host: "::1", port: 65_535),
                         .tcp(host: "example.org", port: 443)] {
            XCTAssertEqual(Endpoint.parseTCP(endpoint.description), endpoint)
        }
        XCTAssertEqual(Endpoint.tcp(host: "::1", port: 80).description, "[::1]:80")
        XCTAssertEqual(Endpoint.unix(path: "/tmp/b.sock").description, "unix:/tmp/b.sock")
    }

    func testUnixPathLimitMatchesSockaddr() {
        // sun_path is 108 bytes on Linux, one of which is the terminating NUL.
        XCTAssertEqual(Endpoint.unixPathBytesMax, 107)
    }
}
