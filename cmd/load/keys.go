package main

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// keyPool is a fixed set of per-session RSA keys generated before any
// measurement, handed out round robin, so that the clients' key generation
// (tens of milliseconds per key) is not part of what is measured. Sessions
// that share a key lose the forward secrecy a fresh key gives: acceptable
// for a load test, never for a real client.
type keyPool struct {
	keys []*rsa.PrivateKey
	next atomic.Uint64
}

// newKeyPool generates n keys of bits bits on every CPU.
func newKeyPool(n, bits int) (*keyPool, error) {
	p := &keyPool{keys: make([]*rsa.PrivateKey, n)}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				k, err := rsa.GenerateKey(rand.Reader, bits)
				if err != nil {
					errs <- fmt.Errorf("load: session key: %w", err)
					continue
				}
				p.keys[i] = k
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return p, nil
}

// get returns the next key of the pool.
func (p *keyPool) get() *rsa.PrivateKey {
	return p.keys[(p.next.Add(1)-1)%uint64(len(p.keys))]
}
