@testable import BatonServer
import Logging
import XCTest

/// Failed-login throttling by peer, without a daemon: `Admission` knows no sockets and no clock.
final class AdmissionThrottleTests: XCTestCase {
    private func admission() -> Admission {
        var configuration = AdmissionConfiguration()
        configuration.loginFailuresBeforeThrottle = 3
        return Admission(configuration: configuration, frameBytesMax: 1 << 20, logger: Logger(label: "test"))
    }

    func testLoginIdentityGroupsIPv6By64AndKeepsIPv4Whole() {
        XCTAssertEqual(Admission.loginIdentity(ofPeerHost: "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]"), "2001:db8:1:2::/64")
        XCTAssertEqual(Admission.loginIdentity(ofPeerHost: "[2001:db8:1:2::1]"), "2001:db8:1:2::/64")
        XCTAssertEqual(Admission.loginIdentity(ofPeerHost: "[2001:db8:1:3::1]"), "2001:db8:1:3::/64")
        XCTAssertEqual(Admission.loginIdentity(ofPeerHost: "[::1]"), "::/64")
        XCTAssertEqual(Admission.loginIdentity(ofPeerHost: "[::ffff:10.1.2.3]"), "10.1.2.3")
        XCTAssertEqual(Admission.loginIdentity(ofPeerHost: "10.1.2.3"), "10.1.2.3")
        XCTAssertEqual(Admission.loginIdentity(ofPeerHost: "[fe80::1%eth0]"), "[fe80::1%eth0]")
    }

    /// One host rotating through its /64 is throttled as one peer; a neighbour /64 is not.
    func testFailuresFromRotatingIPv6AddressesThrottleTheirWhole64() {
        let admission = admission()
        for (index, host) in ["[2001:db8:0:7::1]", "[2001:db8:0:7::2]", "[2001:db8:0:7:ffff::3]"].enumerated() {
            XCTAssertNil(admission.refusal(transport: .tcp, peerHost: host, now: UInt64(index)), "throttled before the third failure")
            admission.loginFailed(peerHost: host, now: UInt64(index), details: [:])
        }
        let refusal = admission.refusal(transport: .tcp, peerHost: "[2001:db8:0:7:1234:5678:9abc:def0]", now: 10)
        XCTAssertEqual(refusal?.code, .loginThrottled)
        XCTAssertTrue(refusal?.message.contains("2001:db8:0:7::/64") == true, refusal?.message ?? "")
        XCTAssertNil(admission.refusal(transport: .tcp, peerHost: "[2001:db8:0:8::1]", now: 10))
        XCTAssertNil(admission.refusal(transport: .unix, peerHost: nil, now: 10))
        // The throttle passes (1 s after the third failure).
        XCTAssertNil(admission.refusal(transport: .tcp, peerHost: "[2001:db8:0:7::9]", now: 2 + 1_000))
    }

    /// IPv4 peers stay per address: a neighbour is not throttled for another's failures.
    func testIPv4FailuresThrottleOnlyThatAddress() {
        let admission = admission()
        for time in 0..<3 { admission.loginFailed(peerHost: "192.0.2.7", now: UInt64(time), details: [:]) }
        XCTAssertEqual(admission.refusal(transport: .tcp, peerHost: "192.0.2.7", now: 5)?.code, .loginThrottled)
        XCTAssertEqual(admission.refusal(transport: .tcp, peerHost: "[::ffff:192.0.2.7]", now: 5)?.code, .loginThrottled)
        XCTAssertNil(admission.refusal(transport: .tcp, peerHost: "192.0.2.8", now: 5))
    }
}
