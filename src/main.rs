fn main() {
    println!("pasa");
}
