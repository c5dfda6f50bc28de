//! ONNX models as lethe writes them: the protobuf messages ([`proto`], with the field numbers of
//! onnx.proto) and a graph builder over them ([`graph`]). A leaf: it knows nothing of models or
//! their parameters, only of nodes, tensors and their names.

pub mod graph;
pub mod proto;
