"""The WIT/WPT examples of draft-ietf-wimse-workload-creds §5.1 and draft-ietf-wimse-wpt §2 (spec digest §5.2)."""

from __future__ import annotations

WIT = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6Ikp1bmUgNSIsInR5cCI6IndpdCtqd3QifQ.eyJjbmYiOnsiandrIjp7ImFsZyI6IkVkRFNBIiwiY3J2Ijoi"
    "RWQyNTUxOSIsImt0eSI6Ik9LUCIsIngiOiIxQ1hYdmZsTl9MVlZzSXNZWHNVdkIwM0ptbEdXZUNIcVFWdW91Q0Y5MmJnIn19LCJleHAiOjE3ND"
    "U1MTI1MTAsImlhdCI6MTc0NTUwODkxMCwianRpIjoieC1fMUNUTDJjY2EzQ1NFNGN3Yl9sIiwic3ViIjoid2ltc2U6Ly9leGFtcGxlLmNvbS9z"
    "cGVjaWZpYy13b3JrbG9hZCJ9.6KraSQUxWdl9dxFQ3Fj6dPY0Vi88OkwFwZpAIOhLeq6AbXAnLLQgOp8U9UDGcBuYF3KiNv6oKQD1ZWAzrMZOJw"
)
WPT = (
    "eyJhbGciOiJFZERTQSIsInR5cCI6IndwdCtqd3QifQ.eyJhdGgiOiJDTDR3amZwUm1OZi1iZFlJYllMblY5ZDVyTUFSR3dLWUUxMHdVd3pDMGpJ"
    "IiwiYXVkIjoiaHR0cHM6Ly93b3JrbG9hZC5leGFtcGxlLmNvbS9wYXRoIiwiZXhwIjoxNzQ1NTEwMDE2LCJqdGkiOiJfX2J3YzRFU0MzYWNjMk"
    "xUQzEtX3giLCJ3dGgiOiJBYVlVZkMzNEQxZGkyRnhRTHBpSUpKN1NnOFZaNm84T0Nkd1NmOUlUb0xnIn0.PI7d9AcYhLoEgPgbJvcM132lkBK"
    "nM1NXU-5hZUzVTIyj2dRJaTLFs6e5NYv5gg6AqcV7NvkYCwfgMgWasWQzCA"
)
#: The Identity Server's public key (the trust anchor of ``example.com``).
ANCHOR_JWK = {
    "kty": "EC",
    "kid": "June 5",
    "crv": "P-256",
    "x": "kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks",
    "y": "n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo",
}
#: The workload key (its private part is published in the draft "for elucidative purposes").
WORKLOAD_JWK = {
    "kty": "OKP",
    "crv": "Ed25519",
    "x": "1CXXvflN_LVVsIsYXsUvB03JmlGWeCHqQVuouCF92bg",
    "d": "sdLX8yCYKqo_XvGBLn-ZWeKT7llYeeQpgeCaXVxb5kY",
}
ACCESS_TOKEN = "16_mAd0GiwaZokU26_0902100"
AUDIENCE = "https://workload.example.com/path"
TRUST_DOMAIN = "example.com"
WORKLOAD = "wimse://example.com/specific-workload"
WIT_EXP = 1745512510
WPT_EXP = 1745510016
#: A clock at which both examples are valid and the WPT expires within 60 s.
NOW = WPT_EXP - 30
