// Package envflag gives command-line flags environment-variable twins: the
// variable supplies the flag's default, so a flag given on the command
// line wins over the environment, which wins over the built-in default.
// Values that do not parse are collected and reported together by Err.
package envflag

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Env reads defaults from an environment.
type Env struct {
	getenv func(string) string
	errs   []error
}

// New returns an Env reading through getenv (os.Getenv, or a map in tests).
func New(getenv func(string) string) *Env { return &Env{getenv: getenv} }

// String returns the variable name, or def when it is unset or empty.
func (e *Env) String(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// Bool returns the variable name parsed as a boolean (1, t, true, 0, f,
// false, …), or def when it is unset or empty.
func (e *Env) Bool(name string, def bool) bool {
	return parse(e, name, def, strconv.ParseBool)
}

// Int returns the variable name parsed as a decimal integer, or def.
func (e *Env) Int(name string, def int) int {
	return parse(e, name, def, strconv.Atoi)
}

// Duration returns the variable name parsed by time.ParseDuration, or def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	return parse(e, name, def, time.ParseDuration)
}

// Set reports whether the variable name is set to a non-empty value.
func (e *Env) Set(name string) bool { return e.getenv(name) != "" }

// Err returns every parse error so far, each naming its variable, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

func parse[T any](e *Env, name string, def T, p func(string) (T, error)) T {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	x, err := p(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: %w", name, v, err))
		return def
	}
	return x
}
