// Package oidc is the protocol core of federated sign-in with OpenID
// Connect: one Provider per configured identity provider (OP), the
// authorization code flow with PKCE (S256), state and nonce, and the
// verification of the ID token. It knows nothing about routes, cookies,
// pages or accounts: the caller stores the Flow that Start returns (in an
// encrypted, short-lived cookie), gives it back to Finish with the
// callback's query, and maps the returned Identity (issuer + subject, never
// the email alone) to a user.
//
// What is checked, and by whom:
//
//   - go-oidc (IDTokenVerifier.Verify): the signature, against the OP's
//     JWKS found by discovery and refetched when a token names an unknown
//     key (key rotation); the algorithm, restricted to the asymmetric ones
//     in SigningAlgs (never "none", never HS*); iss equals the configured
//     issuer; aud contains the client id; exp is not past (Now is the
//     injected clock minus ClockSkew, so exp gets ClockSkew of grace); nbf,
//     when present, is not more than 5 minutes ahead.
//   - this package: state (constant-time) and that the flow belongs to
//     this provider and is younger than MaxFlowAge; the callback's iss, when
//     the OP sends one (RFC 9207), equals the issuer; the OP's error
//     parameter; the code exchange with the PKCE verifier; an ID token is
//     present in the token response; iat is not more than ClockSkew in the
//     future (go-oidc ignores iat); the nonce, in constant time (go-oidc
//     does not check it); at_hash against the access token when the token
//     carries one (go-oidc's VerifyAccessToken); azp, when present, equals
//     the client id; a non-empty subject; the allowed email domains, which
//     need email_verified=true.
//
// Not checked: auth_time and max_age, acr, the userinfo endpoint (the
// claims are the ID token's: configure the OP to put email and names in
// it). go-oidc refetches the JWKS only when a token names a key it does not
// hold, so a key the OP withdraws stays trusted until then.
package oidc
