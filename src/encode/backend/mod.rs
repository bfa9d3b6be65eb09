//! Where encoders compute. Today: vellum's native CPU pass for the BERT family
//! ([`native_bert`]) with its vectorised element-wise kernels ([`vector_math`]); candle (training)
//! and CUDA backends arrive beside it and are chosen by the encoder options' `device`.

pub mod native_bert;
pub mod vector_math;
