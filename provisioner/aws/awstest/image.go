package awstest

// AddImage registers an AMI that instances can be launched from, with its root device name
// ("/dev/xvda" if empty).
func (s *Server) AddImage(id, rootDevice string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rootDevice == "" {
		rootDevice = "/dev/xvda"
	}
	s.ec2.images[id] = rootDevice
}

var imageActions = actions{
	"DescribeImages": (*Server).describeImages,
}

func (s *Server) describeImages(p params) (any, error) {
	type image struct {
		ID         string `xml:"imageId"`
		State      string `xml:"imageState"`
		RootDevice string `xml:"rootDeviceName"`
		RootType   string `xml:"rootDeviceType"`
		Owner      string `xml:"imageOwnerId"`
	}
	var out []image
	for _, id := range p.list("ImageId") {
		root, ok := s.ec2.images[id]
		if !ok {
			return nil, badRequest("InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
		}
		out = append(out, image{ID: id, State: "available", RootDevice: root, RootType: "ebs", Owner: AccountID})
	}
	return &struct {
		ec2Meta
		Images []image `xml:"imagesSet>item"`
	}{Images: out}, nil
}
