// Outbox: the bounded outbound queue of one connection.
#include "limits/outbox.hpp"

namespace sigsrv {

Outbox::Offer Outbox::offer(std::size_t size, std::size_t in_stream, std::size_t cap) {
  if (overloaded_) return Offer::kRefused;
  if (bytes_ + in_stream + size > cap) {
    overloaded_ = true;
    return Offer::kOverloaded;
  }
  return Offer::kAccepted;
}

void Outbox::push(SharedText message) {
  bytes_ += message->size();
  queue_.push_back(std::move(message));
}

const std::string* Outbox::begin_write() {
  if (writing_ || head_ == queue_.size()) return nullptr;
  writing_ = true;
  return queue_[head_].get();
}

void Outbox::end_write() {
  if (!writing_) return;
  writing_ = false;
  bytes_ -= queue_[head_]->size();
  queue_[head_].reset();
  if (++head_ == queue_.size()) {
    queue_.clear();
    head_ = 0;
  }
}

void Outbox::drop_unsent() {
  const std::size_t keep = head_ + (writing_ ? 1 : 0);
  for (std::size_t i = keep; i < queue_.size(); ++i) bytes_ -= queue_[i]->size();
  queue_.resize(keep);
  if (keep == head_) {
    queue_.clear();
    head_ = 0;
  }
}

}  // namespace sigsrv
