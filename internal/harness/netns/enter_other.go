//go:build !linux

package netns

import "errors"

func inNamespace(string, func() error) error {
	return errors.New("netns: network namespaces need Linux")
}
