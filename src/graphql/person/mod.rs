//! Persons in the API: the object and its queries.

mod object;
mod query;

pub use object::{Person, PersonConnection, PersonEdge};
pub use query::{PeopleFilter, PersonQuery};
