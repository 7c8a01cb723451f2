package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// MinCookieKeyBytes is the least entropy accepted for one cookie key.
const MinCookieKeyBytes = 32

// DecodeKeys decodes the comma-separated base64 cookie secrets, newest
// first. Standard and URL-safe base64, padded or not, are accepted. It
// fails when there is no key, a key is not base64, or a key is shorter than
// MinCookieKeyBytes.
func (c CookieConfig) DecodeKeys() ([][]byte, error) {
	if strings.TrimSpace(c.Keys) == "" {
		return nil, errors.New("required: at least one base64 key of 32 or more bytes (crmgate gen-keys prints one)")
	}
	var keys [][]byte
	for i, part := range strings.Split(c.Keys, ",") {
		part = strings.TrimSpace(part)
		k, err := decodeBase64(part)
		if err != nil {
			return nil, fmt.Errorf("key %d is not base64", i+1)
		}
		if len(k) < MinCookieKeyBytes {
			return nil, fmt.Errorf("key %d has %d bytes; at least %d are required", i+1, len(k), MinCookieKeyBytes)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// PrivateKeys parses the PEM signing keys, newest first. Every block must be
// an ECDSA P-256 private key in PKCS#8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE
// KEY") form; anything else in the value is an error.
func (s SigningConfig) PrivateKeys() ([]*ecdsa.PrivateKey, error) {
	rest := []byte(strings.TrimSpace(s.Keys))
	if len(rest) == 0 {
		return nil, errors.New("required: at least one PEM ECDSA P-256 private key (crmgate gen-keys prints one)")
	}
	var keys []*ecdsa.PrivateKey
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("key %d: not PEM", len(keys)+1)
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("key %d: PEM type %q is not a private key", len(keys)+1, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("key %d: %v", len(keys)+1, err)
		}
		ek, ok := key.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, fmt.Errorf("key %d: must be ECDSA P-256 (ES256)", len(keys)+1)
		}
		keys = append(keys, ek)
		rest = []byte(strings.TrimSpace(string(rest)))
	}
	return keys, nil
}

// GenerateCookieKey returns a new random cookie key, base64 encoded.
func GenerateCookieKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// GenerateSigningKey returns a new ECDSA P-256 private key in PKCS#8 PEM.
func GenerateSigningKey() (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}
