package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// runKeygen writes a new ECDSA P-256 private key to path, readable by its owner only: the
// ServiceAccount token signing key of a throwaway control plane. SEC 1 ("EC PRIVATE KEY"), the
// form kube-apiserver reads both as --service-account-key-file and as the signing key (it does
// not take PKCS #8 EC keys for the former). It returns the process exit code.
func runKeygen(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: kube keygen FILE")
		return 2
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keygen: %v\n", err)
		return 1
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keygen: %v\n", err)
		return 1
	}
	block := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(args[0], block, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "keygen: %v\n", err)
		return 1
	}
	return 0
}
