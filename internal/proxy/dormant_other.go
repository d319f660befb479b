//go:build !linux

package proxy

import "errors"

// dormancy needs epoll; elsewhere idle sessions keep their goroutines.
type dormancy struct{}

func newDormancy(*Server) (*dormancy, error) { return nil, errors.ErrUnsupported }
func (*dormancy) sleep(*session) bool        { return false }
func (*dormancy) wake(*session)              {}
func (*dormancy) close()                     {}
