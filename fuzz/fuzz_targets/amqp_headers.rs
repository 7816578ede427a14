//! An AMQP headers table off the wire (lapin's parser), read as enoki reads
//! it: context data and the call-id stack, a worker context continuing it,
//! the headers written back, and the dead-letter record (`x-death`, the
//! retry and redelivery counts) read and extended.
#![no_main]

use enoki::context::{ContextData, WorkerCtx};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok((_, table)) = amq_protocol_types::parsing::parse_field_table(bytes) else {
        return;
    };
    let headers = enoki::__fuzz::headers_from_table(&table);
    if let Ok(context) = ContextData::from_headers(&headers) {
        let worker = WorkerCtx::new("svc", "method", context, 10);
        assert!(worker.call_id_stack().len() <= 11);
        let out = worker.headers();
        let _ = enoki::__fuzz::table_from_headers(&out);
    }
    let _ = enoki::__fuzz::table_from_headers(&headers);

    let _ = enoki::transport::death::newest(&headers);
    let _ = enoki::transport::death::count(&headers, |queue, _| queue.ends_with(".retry.1000"));
    let _ = enoki::entrypoint::poison::RedeliveryLimit::returns(&headers);
    let mut extended = headers.clone();
    enoki::transport::death::record(&mut extended, "q", "rejected", "x", "k");
    let list = extended[enoki::transport::death::HEADER].as_array().unwrap();
    assert!(list.len() <= enoki::transport::death::MAX_ENTRIES);
    assert_eq!(enoki::transport::death::newest(&extended).unwrap().queue, "q");
});
